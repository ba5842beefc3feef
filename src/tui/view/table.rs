//! The header and the service table: the fleet's totals, then one row per service,
//! its columns chosen by priority to fit the terminal's width, with CPU and memory
//! figures and their trend.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{state_symbol, Theme};
use crate::event::{
    format_duration_ms, short_id, BuildStatus, HealthStatus, ServiceSnapshot, ServiceState,
};
use crate::tui::state::{Pane, ResourceHistory, TuiMode, TuiState};
use crate::tui::text::{self, fit, truncate, truncate_spans, width};

/// Samples shown per sparkline.
const SPARK_WIDTH: usize = 6;
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Left margin of table rows: the selection marker.
const MARKER: &str = "▸ ";
/// The event column gets at least this much, or a third of a narrow table.
const MIN_EVENT_WIDTH: usize = 28;
/// Longer names are cut, so one long name does not squeeze every other column.
const MAX_NAME_WIDTH: usize = 20;

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

pub(super) fn draw_header(frame: &mut Frame, state: &TuiState, area: Rect, theme: Theme) {
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
    if service.status.state == ServiceState::Waiting
        && let Some(dependency) = &service.waiting_for
    {
        let text = format!("waiting for {dependency}");
        return vec![Span::styled(fit(&text, cells), theme.fg(Color::Blue))];
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

pub(super) fn draw_table(
    frame: &mut Frame,
    state: &TuiState,
    area: Rect,
    now_ms: u64,
    theme: Theme,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_sizes_and_cpu_read_like_the_issue_says() {
        // Uptimes are `event::format_duration_ms`, tested there.
        assert_eq!(format_ago(12_400), "12s ago");
        assert_eq!(format_bytes(35 * 1024 * 1024), "35M");
        assert_eq!(format_cpu(1.234), "1.2%");
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
