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

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::keys::HELP;
use super::layout::{self, Areas};
use super::state::{InputKind, LogGeometry, LogView, Pane, ResourceHistory, TuiMode, TuiState};
use super::text::{self, fit, truncate, truncate_spans, width, wrap_spans};
use crate::event::{
    format_duration_ms, short_id, BuildStatus, HealthStatus, ServiceSnapshot, ServiceState,
};
use crate::logs::{format_timestamp, Stream};

/// Samples shown per sparkline.
const SPARK_WIDTH: usize = 6;
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Colours for service prefixes in the merged log, all from the basic eight.
const SERVICE_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Blue,
    Color::Yellow,
    Color::Green,
    Color::Red,
];
/// Left margin of table rows: the selection marker.
const MARKER: &str = "▸ ";
/// The event column gets at least this much, or a third of a narrow table.
const MIN_EVENT_WIDTH: usize = 28;
/// Longer names are cut, so one long name does not squeeze every other column.
const MAX_NAME_WIDTH: usize = 20;

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
            ServiceState::Backoff => self.fg(Color::Magenta),
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
    }
}

/// `now`, `12s ago`, `3m ago`, `2h ago`, `4d ago`.
pub fn format_ago(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => "now".into(),
        1..60 => format!("{secs}s ago"),
        60..3_600 => format!("{}m ago", secs / 60),
        3_600..86_400 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// `512K`, `35M`, `4.2M`, `1.2G`.
pub fn format_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{:.0}K", b / K)
    } else if b < 10.0 * K * K {
        format!("{:.1}M", b / K / K)
    } else if b < K * K * K {
        format!("{:.0}M", b / K / K)
    } else {
        format!("{:.1}G", b / K / K / K)
    }
}

pub fn format_cpu(percent: f32) -> String {
    if percent < 10.0 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// The last `SPARK_WIDTH` values as block characters, from `low` (or the window's
/// smallest value) to the window's largest, which is at least `min_span` above `low`,
/// so idle noise and flat memory draw as a flat line.
fn sparkline(values: impl Iterator<Item = f64>, low: Option<f64>, min_span: f64) -> String {
    let values: Vec<f64> = values.collect();
    let recent = &values[values.len().saturating_sub(SPARK_WIDTH)..];
    let low = low.unwrap_or_else(|| recent.iter().copied().fold(f64::INFINITY, f64::min));
    let high = recent.iter().copied().fold(low + min_span, f64::max);
    let top_level = (SPARK_LEVELS.len() - 1) as f64;
    let mut out: String = std::iter::repeat_n(' ', SPARK_WIDTH - recent.len()).collect();
    for value in recent {
        let level = ((value - low) / (high - low) * top_level).round();
        out.push(SPARK_LEVELS[level.clamp(0.0, top_level) as usize]);
    }
    out
}

/// CPU from 0% (at least 5% tall); memory from its lowest recent value (at least 5%
/// or 1 MiB tall), where a leak shows as a ramp.
fn trend(history: &ResourceHistory) -> String {
    let cpu = sparkline(
        history.cpu_percent.iter().map(|c| f64::from(*c)),
        Some(0.0),
        5.0,
    );
    let rss = history.rss_bytes.iter().map(|b| *b as f64);
    let lowest = rss.clone().fold(f64::INFINITY, f64::min);
    let memory = sparkline(rss, None, (lowest * 0.05).max(1024.0 * 1024.0));
    format!("{cpu} {memory}")
}

pub fn draw(frame: &mut Frame, state: &TuiState, now_ms: u64) {
    let area = frame.area();
    let theme = Theme::new(state.no_color);
    let areas = layout::areas(area, state.snapshot.services.len(), state.copy);
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

fn draw_header(frame: &mut Frame, state: &TuiState, area: Rect, theme: Theme) {
    let services = &state.snapshot.services;
    let count = |states: &[ServiceState]| {
        services
            .iter()
            .filter(|service| states.contains(&service.status.state))
            .count()
    };
    use ServiceState::*;
    let healthy = count(&[Healthy, Running]);
    let starting = count(&[Starting, Building, Waiting, Stopping]);
    let failed = count(&[Failed, Unhealthy, Backoff]);
    let stopped = count(&[Stopped]);
    let done = count(&[Completed]);
    let project = if state.snapshot.project.is_empty() {
        "fleet"
    } else {
        &state.snapshot.project
    };
    let mut spans = vec![
        Span::styled(" fleet · ", theme.dim()),
        Span::styled(project.to_owned(), theme.bold()),
        Span::raw("  "),
    ];
    let mut total = |symbol: &str, n: usize, label: &str, style: Style| {
        spans.push(Span::styled(format!("{symbol} {n} {label}"), style));
        spans.push(Span::raw("  "));
    };
    total("●", healthy, "healthy", theme.state(Healthy));
    total("◐", starting, "starting", theme.state(Starting));
    total("✗", failed, "failed", theme.state(Failed));
    if stopped > 0 {
        total("○", stopped, "stopped", theme.state(Stopped));
    }
    if done > 0 {
        total("✓", done, "done", theme.state(Completed));
    }
    spans.push(Span::styled(
        format!("{} services", services.len()),
        theme.dim(),
    ));
    let right = if state.snapshot.shutting_down {
        Span::styled(" shutting down… ", theme.error())
    } else {
        match state.tui_mode() {
            TuiMode::Up => Span::styled(" up ", theme.dim()),
            TuiMode::Attach => Span::styled(" attached ", theme.dim()),
        }
    };
    let right_width = width(&right.content);
    let left_width = (area.width as usize).saturating_sub(right_width);
    let mut line = truncate_spans(spans, left_width).spans;
    let used = text::spans_width(&line);
    line.push(Span::raw(" ".repeat(left_width.saturating_sub(used))));
    if area.width >= 80 {
        line.push(right);
    }
    frame.render_widget(Paragraph::new(Line::from(line)), area);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Name,
    Kind,
    State,
    Health,
    Pid,
    Generation,
    Restarts,
    Uptime,
    Ports,
    Cpu,
    Memory,
    Trend,
    Event,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Kind => "KIND",
            Column::State => "STATE",
            Column::Health => "HEALTH",
            Column::Pid => "PID/ID",
            Column::Generation => "GEN",
            Column::Restarts => "RST",
            Column::Uptime => "UPTIME",
            Column::Ports => "PORTS",
            Column::Cpu => "CPU",
            Column::Memory => "MEM",
            Column::Trend => "CPU·MEM TREND",
            Column::Event => "LAST EVENT",
        }
    }

    /// Lower is kept longer when the terminal narrows.
    fn priority(self) -> u8 {
        match self {
            Column::Name | Column::State => 0,
            Column::Event => 1,
            Column::Uptime => 2,
            Column::Cpu | Column::Memory => 3,
            Column::Ports | Column::Pid | Column::Trend => 4,
            Column::Restarts => 5,
            Column::Kind => 6,
            Column::Health | Column::Generation => 7,
        }
    }

    fn right_aligned(self) -> bool {
        matches!(
            self,
            Column::Generation | Column::Restarts | Column::Cpu | Column::Memory
        )
    }
}

/// Columns in display order with their widths; the event column takes what is left.
fn choose_columns(state: &TuiState, total: usize) -> Vec<(Column, usize)> {
    let services = &state.snapshot.services;
    let available = total.saturating_sub(width(MARKER));
    let name_width = services
        .iter()
        .map(|service| width(&service.name))
        .max()
        .unwrap_or(0)
        .min(MAX_NAME_WIDTH)
        .min(available / 4)
        .max(4);
    let min_event = MIN_EVENT_WIDTH.min(available / 3);
    let pid_width = if services
        .iter()
        .any(|service| service.status.container.is_some())
    {
        12
    } else {
        services
            .iter()
            .filter_map(|service| service.status.pid)
            .map(|pid| pid.to_string().len())
            .max()
            .unwrap_or(3)
            .max(6)
    };
    let ports_width = services
        .iter()
        .map(|service| ports_text(service).len())
        .max()
        .unwrap_or(0)
        .clamp(5, 17);
    let all = [
        (Column::Name, name_width),
        (Column::Kind, 9),
        (Column::State, 11),
        (Column::Health, 9),
        (Column::Pid, pid_width),
        (Column::Generation, 3),
        (Column::Restarts, 3),
        (Column::Uptime, 6),
        (Column::Ports, ports_width),
        (Column::Cpu, 5),
        (Column::Memory, 5),
        (Column::Trend, 2 * SPARK_WIDTH + 1),
    ];
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&index| all[index].0.priority());
    let mut chosen = vec![false; all.len()];
    // Each chosen column costs its width plus one space before the event column.
    let mut used = min_event;
    for index in order {
        let cost = all[index].1 + 1;
        if used + cost <= available || all[index].0.priority() == 0 {
            chosen[index] = true;
            used += cost;
        }
    }
    let mut columns: Vec<(Column, usize)> = all
        .iter()
        .zip(&chosen)
        .filter(|(_, chosen)| **chosen)
        .map(|(column, _)| *column)
        .collect();
    let fixed: usize = columns.iter().map(|(_, w)| w + 1).sum();
    if fixed > available {
        // Too narrow even for name and state: the name gives way first.
        let excess = fixed - available;
        if let Some((_, name)) = columns.iter_mut().find(|(c, _)| *c == Column::Name) {
            *name = name.saturating_sub(excess).max(4);
        }
    }
    let fixed: usize = columns.iter().map(|(_, w)| w + 1).sum();
    columns.push((Column::Event, available.saturating_sub(fixed)));
    columns
}

fn ports_text(service: &ServiceSnapshot) -> String {
    service
        .status
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn cell(
    state: &TuiState,
    service: &ServiceSnapshot,
    column: Column,
    now_ms: u64,
    theme: Theme,
) -> Span<'static> {
    let resources = state.resources.get(&service.name);
    let dash = || Span::styled("-", theme.dim());
    match column {
        Column::Name => Span::raw(service.name.clone()),
        Column::Kind => Span::raw(service.kind.to_string()),
        Column::State => Span::styled(
            format!(
                "{} {}",
                state_symbol(service.status.state),
                service.status.state
            ),
            theme.state(service.status.state),
        ),
        Column::Health => match service.status.health {
            Some(HealthStatus::Unhealthy) => Span::styled("unhealthy", theme.error()),
            Some(health) => Span::raw(health.as_str()),
            None => dash(),
        },
        Column::Pid => match (&service.status.container, service.status.pid) {
            (Some(id), _) => Span::raw(short_id(id).to_owned()),
            (None, Some(pid)) => Span::raw(pid.to_string()),
            (None, None) => dash(),
        },
        Column::Generation => Span::raw(service.status.generation.to_string()),
        Column::Restarts if service.status.restarts > 0 => {
            Span::styled(service.status.restarts.to_string(), theme.fg(Color::Yellow))
        }
        Column::Restarts => Span::raw("0"),
        Column::Uptime => match service.status.started_at_ms {
            Some(started) if service.status.state.is_up() => {
                Span::raw(format_duration_ms(now_ms.saturating_sub(started)))
            }
            _ => dash(),
        },
        Column::Ports if service.status.ports.is_empty() => dash(),
        Column::Ports => Span::raw(ports_text(service)),
        // Figures of a stopped instance would only mislead.
        Column::Cpu | Column::Memory | Column::Trend if !service.status.state.is_up() => dash(),
        Column::Cpu => match resources.and_then(|r| r.cpu_percent.back()) {
            Some(cpu) => Span::raw(format_cpu(*cpu)),
            None => dash(),
        },
        Column::Memory => match resources.and_then(|r| r.rss_bytes.back()) {
            Some(rss) => Span::raw(format_bytes(*rss)),
            None => dash(),
        },
        Column::Trend => match resources {
            Some(history) if !history.cpu_percent.is_empty() => {
                Span::styled(trend(history), theme.fg(Color::Cyan))
            }
            _ => dash(),
        },
        Column::Event => Span::raw(String::new()),
    }
}

/// `waiting for db`, or the last event with its age, e.g. `build failed: … · 12s ago`.
fn event_spans(
    state: &TuiState,
    service: &ServiceSnapshot,
    cells: usize,
    now_ms: u64,
    theme: Theme,
) -> Vec<Span<'static>> {
    let troubled = matches!(
        service.status.state,
        ServiceState::Failed | ServiceState::Unhealthy | ServiceState::Backoff
    ) || service.status.build == Some(BuildStatus::Failed);
    let style = if troubled {
        theme.fg(Color::Red)
    } else {
        theme.dim()
    };
    if service.status.state == ServiceState::Waiting {
        if let Some(dependency) = &service.waiting_for {
            let text = format!("waiting for {dependency}");
            return vec![Span::styled(fit(&text, cells), theme.fg(Color::Blue))];
        }
    }
    if let Some(note) = service.starting_note(now_ms) {
        return vec![Span::styled(fit(&note, cells), theme.fg(Color::Yellow))];
    }
    let Some((event, at_ms)) = state.last_event(&service.name) else {
        return vec![Span::raw(" ".repeat(cells))];
    };
    let age = format!(" · {}", format_ago(now_ms.saturating_sub(at_ms)));
    let text_cells = cells.saturating_sub(width(&age));
    if text_cells < 6 {
        return vec![Span::styled(fit(event, cells), style)];
    }
    let event = truncate(event, text_cells).into_owned();
    let pad = cells.saturating_sub(width(&event) + width(&age));
    vec![
        Span::styled(event, style),
        Span::styled(age, theme.dim()),
        Span::raw(" ".repeat(pad)),
    ]
}

fn aligned(span: Span<'static>, cells: usize, right: bool) -> Span<'static> {
    let cut = truncate(&span.content, cells).into_owned();
    let pad = " ".repeat(cells.saturating_sub(width(&cut)));
    let content = if right {
        format!("{pad}{cut}")
    } else {
        format!("{cut}{pad}")
    };
    Span::styled(content, span.style)
}

fn draw_table(frame: &mut Frame, state: &TuiState, area: Rect, now_ms: u64, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let total = area.width as usize;
    let columns = choose_columns(state, total);
    let focused = state.focus == Pane::Services;
    let mut header = vec![Span::raw(" ".repeat(width(MARKER)))];
    for (index, (column, cells)) in columns.iter().enumerate() {
        if index > 0 {
            header.push(Span::raw(" "));
        }
        header.push(aligned(
            Span::raw(column.title()),
            *cells,
            column.right_aligned(),
        ));
    }
    let header_style = if focused {
        theme.bold().add_modifier(Modifier::UNDERLINED)
    } else {
        theme.bold()
    };
    let mut lines = vec![truncate_spans(header, total).style(header_style)];
    let rows = area.height.saturating_sub(1) as usize;
    let services = &state.snapshot.services;
    if services.is_empty() {
        lines.push(Line::styled("  (no services yet)", theme.dim()));
    }
    let offset = table_offset(state, rows);
    for (index, service) in services.iter().enumerate().skip(offset).take(rows) {
        let selected = index == state.selected;
        let mut spans = vec![Span::raw(if selected { MARKER } else { "  " })];
        for (position, (column, cells)) in columns.iter().enumerate() {
            if position > 0 {
                spans.push(Span::raw(" "));
            }
            if *column == Column::Event {
                spans.extend(event_spans(state, service, *cells, now_ms, theme));
            } else {
                let span = cell(state, service, *column, now_ms, theme);
                spans.push(aligned(span, *cells, column.right_aligned()));
            }
        }
        let mut line = truncate_spans(spans, total);
        if selected {
            line = line.style(if focused {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                theme.bold()
            });
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The state's offset, moved only as far as needed to show the selected row.
fn table_offset(state: &TuiState, rows: usize) -> usize {
    let rows = rows.max(1);
    let mut offset = state.table_offset;
    if state.selected < offset {
        offset = state.selected;
    } else if state.selected >= offset + rows {
        offset = state.selected + 1 - rows;
    }
    offset.min(state.snapshot.services.len().saturating_sub(rows))
}

fn draw_log_title(frame: &mut Frame, state: &TuiState, areas: &Areas, theme: Theme) {
    let area = areas.log_title;
    if area.height == 0 {
        return;
    }
    let focused = state.focus == Pane::Log;
    // The focused pane's bar is drawn heavy, which reads without colour or bold.
    let rule = if focused { "━" } else { "─" };
    let style = if focused { theme.bold() } else { Style::new() };
    let name = if state.show_all {
        "all services".to_owned()
    } else {
        state.selected_service().unwrap_or("-").to_owned()
    };
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
    if state.show_all {
        let index = state
            .snapshot
            .services
            .iter()
            .position(|service| *service.name == *line.service)
            .unwrap_or(0);
        let name = fit(&line.service, state.prefix_name_width());
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

fn draw_log_body(frame: &mut Frame, state: &TuiState, area: Rect, theme: Theme) {
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
    let hints = "r restart · d redeploy · s stop/start · / search · a all · ? help · q quit";
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

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
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

fn draw_confirm(frame: &mut Frame, area: Rect, theme: Theme) {
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

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn ages_sizes_and_cpu_read_like_the_issue_says() {
        // Uptimes are `event::format_duration_ms`, tested there.
        assert_eq!(format_ago(12_400), "12s ago");
        assert_eq!(format_bytes(35 * 1024 * 1024), "35M");
        assert_eq!(format_cpu(1.234), "1.2%");
    }

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

    #[test]
    fn sparklines_scale_to_their_window() {
        assert_eq!(
            sparkline([0.0, 50.0, 100.0].into_iter(), Some(0.0), 5.0),
            "   ▁▅█"
        );
        let flat = ResourceHistory {
            cpu_percent: [0.1; 6].into(),
            rss_bytes: [50 << 20; 6].into(),
        };
        assert_eq!(trend(&flat), "▁▁▁▁▁▁ ▁▁▁▁▁▁");
    }
}
