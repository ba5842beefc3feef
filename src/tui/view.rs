//! The pure draw: `draw(frame, state, now_ms)` paints the whole screen from
//! [`TuiState`] and reads nothing else (no clock, no environment, no IO), so any
//! screen can be reproduced in a test backend.
//!
//! Layout from [`super::layout`]: a header with the project and totals, the service
//! table, the log pane with a one-line title bar, a footer, and the help or quit
//! dialog on top. Every cell is cut to its width with an ellipsis before it is drawn,
//! so nothing wraps into the next column. Colours go through [`Theme`], which uses only
//! the 8 basic ANSI colours and, with `NO_COLOR`, none at all: state symbols, reverse
//! video and the title bar's line style carry the meaning instead.
//!
//! This file holds the theme, the footer and the order of drawing; the header and the
//! service table are in `table`, the log pane in `log_pane`, the help and the quit
//! dialog in `dialogs`.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::layout::{self, Areas};
use super::rows::RowKind;
use super::state::{InputKind, TuiState};
use super::text::{truncate_spans, width};
use crate::event::ServiceState;
use crate::logs::Stream;

mod dialogs;
mod log_pane;
mod table;

use dialogs::{draw_confirm, draw_help};
use log_pane::{draw_log_body, draw_log_title};
use table::{draw_header, draw_table};
pub use table::{format_ago, format_bytes, format_cpu};

/// Colours for service prefixes in the merged log, all from the basic eight.
const SERVICE_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Blue,
    Color::Yellow,
    Color::Green,
    Color::Red,
];

/// Styles with colour, or (for `NO_COLOR`) only modifiers.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn new(no_color: bool) -> Theme {
        Theme { color: !no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn state(self, state: ServiceState) -> Style {
        match state {
            ServiceState::Healthy | ServiceState::Running | ServiceState::Completed => {
                self.fg(Color::Green)
            }
            ServiceState::Starting | ServiceState::Stopping => self.fg(Color::Yellow),
            ServiceState::Building => self.fg(Color::Cyan),
            ServiceState::Waiting => self.fg(Color::Blue),
            ServiceState::Backoff | ServiceState::Unknown => self.fg(Color::Magenta),
            ServiceState::Unhealthy | ServiceState::Failed => self.error(),
            ServiceState::Stopped => self.dim(),
        }
    }

    /// A search match; the current one stands out further.
    pub fn hit(self, current: bool) -> Style {
        let base = if self.color {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        };
        if current {
            base.add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            base
        }
    }

    fn service(self, index: usize) -> Style {
        self.fg(SERVICE_COLORS[index % SERVICE_COLORS.len()])
    }

    fn stream(self, stream: Stream) -> Style {
        match stream {
            Stream::Stdout => Style::new(),
            Stream::Stderr => self.fg(Color::Red),
            Stream::Build => self.fg(Color::Cyan),
            Stream::Fleet => self.fg(Color::Yellow),
        }
    }
}

/// A symbol per state, so states read without colour.
pub fn state_symbol(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Healthy | ServiceState::Running => "●",
        ServiceState::Starting => "◐",
        ServiceState::Failed => "✗",
        ServiceState::Unhealthy => "!",
        ServiceState::Stopped => "○",
        ServiceState::Backoff => "↻",
        ServiceState::Stopping => "■",
        ServiceState::Completed => "✓",
        ServiceState::Waiting => "…",
        ServiceState::Building => "▲",
        ServiceState::Unknown => "?",
    }
}

pub fn draw(frame: &mut Frame, state: &TuiState, now_ms: u64) {
    let area = frame.area();
    let theme = Theme::new(state.no_color);
    let areas = layout::areas(area, state.rows.len(), state.copy);
    if state.copy {
        draw_log_body(frame, state, areas.log_body, theme);
        draw_footer(frame, state, &areas, theme);
        return;
    }
    draw_header(frame, state, areas.header, theme);
    draw_table(frame, state, areas.table, now_ms, theme);
    draw_log_title(frame, state, &areas, theme);
    draw_log_body(frame, state, areas.log_body, theme);
    draw_footer(frame, state, &areas, theme);
    if state.help {
        draw_help(frame, area, theme);
    }
    if state.confirm_quit {
        draw_confirm(frame, area, theme);
    }
}

fn draw_footer(frame: &mut Frame, state: &TuiState, areas: &Areas, theme: Theme) {
    let area = areas.footer;
    if area.height == 0 {
        return;
    }
    let cells = area.width as usize;
    if let Some((kind, query)) = state.input() {
        let prompt = match kind {
            InputKind::Search => "/",
            InputKind::Filter => "filter: ",
        };
        let hint = "  Enter: apply  Esc: cancel";
        let line = truncate_spans(
            vec![
                Span::styled(prompt, theme.bold()),
                Span::raw(query.to_owned()),
                Span::styled(hint, theme.dim()),
            ],
            cells,
        );
        frame.render_widget(Paragraph::new(line), area);
        let cursor = (width(prompt) + width(query)).min(cells.saturating_sub(1));
        frame.set_cursor_position((area.x + cursor as u16, area.y));
        return;
    }
    if state.copy {
        let line = truncate_spans(
            vec![Span::styled(
                "copy mode: select text with the mouse · j/k PgUp/PgDn scroll · c or Esc: back",
                theme.dim(),
            )],
            cells,
        );
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    // A replicated service's row adds what only it can do.
    let hints = match state.selected_row().map(|row| row.kind) {
        Some(RowKind::Group { expanded: false }) => {
            "space expand · +/- scale · r restart all · s stop/start · / search · ? help · q quit"
        }
        Some(RowKind::Group { expanded: true }) => {
            "space collapse · +/- scale · r restart all · s stop/start · / search · ? help · q quit"
        }
        Some(RowKind::Replica) => {
            "← collapse · +/- scale · r restart replica · s stop/start · / search · ? help · q quit"
        }
        _ => "r restart · d redeploy · s stop/start · / search · a all · ? help · q quit",
    };
    let spans = match &state.status {
        Some(status) => vec![
            Span::styled(
                status.text.clone(),
                if status.error {
                    theme.error()
                } else {
                    Style::new()
                },
            ),
            Span::styled("   ? help · q quit", theme.dim()),
        ],
        None => vec![Span::styled(hints, theme.dim())],
    };
    frame.render_widget(Paragraph::new(truncate_spans(spans, cells)), area);
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn every_state_has_its_own_symbol_but_running_and_healthy() {
        use ServiceState::*;
        let states = [
            Stopped, Waiting, Building, Starting, Healthy, Unhealthy, Backoff, Stopping, Completed,
            Failed,
        ];
        let mut symbols: Vec<&str> = states.iter().map(|s| state_symbol(*s)).collect();
        symbols.sort();
        symbols.dedup();
        assert_eq!(symbols.len(), states.len());
        assert!(symbols.iter().all(|symbol| width(symbol) == 1));
    }
}
