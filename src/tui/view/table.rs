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
use crate::tui::rows::{self, RowKind, TableRow};
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
    // Totals count instances (a replica is one) of the services the fleet runs; the
    // services no active profile enables are only counted as such.
    let active: Vec<&ServiceSnapshot> = state
        .snapshot
        .services
        .iter()
        .filter(|service| !service.inactive)
        .collect();
    let count = |states: &[ServiceState]| {
        active
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
    let unknown = count(&[Unknown]);
    let distinct = |rows: &mut dyn Iterator<Item = &ServiceSnapshot>| {
        let mut names: Vec<&str> = rows.map(rows::service_of).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    let services = distinct(&mut active.iter().copied());
    let inactive = distinct(&mut state.snapshot.services.iter().filter(|s| s.inactive));
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
    if unknown > 0 {
        total("?", unknown, "unknown", theme.state(Unknown));
    }
    let mut totals = format!("{services} service{}", if services == 1 { "" } else { "s" });
    if active.len() != services {
        totals.push_str(&format!(" ({} instances)", active.len()));
    }
    if inactive > 0 {
        totals.push_str(&format!(" · {inactive} inactive"));
    }
    spans.push(Span::styled(totals, theme.dim()));
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

/// Widest state cell: room for `2/3 healthy · 1 starting`; longer summaries are cut.
const MAX_STATE_WIDTH: usize = 26;
/// Before a replicated service's name: folded or open.
const FOLDED: &str = "▹ ";
const OPEN: &str = "▿ ";
/// Before a replica's name, under its service's.
const INDENT: &str = "  ";

/// The snapshot rows of a table row.
fn instances<'a>(state: &'a TuiState, row: &'a TableRow) -> Vec<&'a ServiceSnapshot> {
    row.instances(&state.snapshot).collect()
}

/// The one snapshot row behind a single or replica row, with its log name.
fn instance<'a>(state: &'a TuiState, row: &TableRow) -> Option<(&'a ServiceSnapshot, &'a str)> {
    let index = *row.members.first()?;
    let service = state.snapshot.services.get(index)?;
    let key = state
        .log_key(index)
        .map_or(service.name.as_str(), |key| &**key);
    Some((service, key))
}

fn name_text(state: &TuiState, row: &TableRow) -> String {
    match row.kind {
        RowKind::Group { expanded } => {
            format!("{}{}", if expanded { OPEN } else { FOLDED }, row.service)
        }
        RowKind::Replica => format!("{INDENT}{}", row.target(&state.snapshot)),
        RowKind::Single => row.target(&state.snapshot).to_owned(),
    }
}

/// `● healthy`; a group's `◐ 2/3 healthy · 1 starting` under its most urgent
/// replica's symbol; `○ 0 replicas` for a service scaled to zero; `○ inactive`.
fn state_span(state: &TuiState, row: &TableRow, theme: Theme) -> Span<'static> {
    let members = instances(state, row);
    if !members.is_empty() && members.iter().all(|service| service.inactive) {
        return Span::styled(
            format!("{} inactive", state_symbol(ServiceState::Stopped)),
            theme.state(ServiceState::Stopped),
        );
    }
    match (row.kind, members.as_slice()) {
        (RowKind::Group { .. }, _) => {
            let summary = rows::summarize(row.replicas(&state.snapshot), members);
            Span::styled(
                format!("{} {}", state_symbol(summary.worst), summary.text()),
                theme.state(summary.worst),
            )
        }
        (_, [service])
            if service.replicas == 0 && service.status.state == ServiceState::Stopped =>
        {
            Span::styled(
                format!("{} 0 replicas", state_symbol(ServiceState::Stopped)),
                theme.state(ServiceState::Stopped),
            )
        }
        (_, [service, ..]) => Span::styled(
            format!(
                "{} {}",
                state_symbol(service.status.state),
                service.status.state
            ),
            theme.state(service.status.state),
        ),
        (_, []) => Span::raw(""),
    }
}

/// Ports in order, runs of three or more as a range: `7003`, `8080-8082,9090`.
fn format_ports(mut ports: Vec<u16>) -> String {
    ports.sort_unstable();
    ports.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < ports.len() {
        let mut end = index;
        while end + 1 < ports.len() && u32::from(ports[end + 1]) == u32::from(ports[end]) + 1 {
            end += 1;
        }
        if end - index >= 2 {
            parts.push(format!("{}-{}", ports[index], ports[end]));
        } else {
            parts.extend(ports[index..=end].iter().map(u16::to_string));
        }
        index = end + 1;
    }
    parts.join(",")
}

fn ports_text(state: &TuiState, row: &TableRow) -> String {
    match row.kind {
        RowKind::Group { .. } => format_ports(
            instances(state, row)
                .iter()
                .flat_map(|service| service.status.ports.iter().copied())
                .collect(),
        ),
        RowKind::Single | RowKind::Replica => instance(state, row)
            .map(|(service, _)| {
                service
                    .status
                    .ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    }
}

/// `3 pids` or `3 ctrs`: how many of a group's replicas have a process or container.
fn group_pids(members: &[&ServiceSnapshot]) -> Option<String> {
    let containers = members
        .iter()
        .filter(|service| service.status.container.is_some())
        .count();
    let processes = members
        .iter()
        .filter(|service| service.status.container.is_none() && service.status.pid.is_some())
        .count();
    match (processes, containers) {
        (0, 0) => None,
        (n, 0) => Some(format!("{n} pids")),
        (0, n) => Some(format!("{n} ctrs")),
        (p, c) => Some(format!("{} up", p + c)),
    }
}

/// Columns in display order with their widths; the event column takes what is left.
fn choose_columns(state: &TuiState, total: usize) -> Vec<(Column, usize)> {
    let services = &state.snapshot.services;
    let table = &state.rows;
    let available = total.saturating_sub(width(MARKER));
    let name_width = table
        .iter()
        .map(|row| width(&name_text(state, row)))
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
        let groups = table
            .iter()
            .filter(|row| row.is_group())
            .filter_map(|row| group_pids(&instances(state, row)))
            .map(|text| text.len());
        services
            .iter()
            .filter_map(|service| service.status.pid)
            .map(|pid| pid.to_string().len())
            .chain(groups)
            .max()
            .unwrap_or(3)
            .max(6)
    };
    let ports_width = table
        .iter()
        .map(|row| ports_text(state, row).len())
        .max()
        .unwrap_or(0)
        .clamp(5, 17);
    let state_width = table
        .iter()
        .map(|row| width(&state_span(state, row, Theme::new(true)).content))
        .max()
        .unwrap_or(0)
        .clamp(11, MAX_STATE_WIDTH);
    let all = [
        (Column::Name, name_width),
        (Column::Kind, 9),
        (Column::State, state_width),
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

/// A cell of a single service's or one replica's row (not its name or state).
fn cell(
    service: &ServiceSnapshot,
    resources: Option<&ResourceHistory>,
    column: Column,
    now_ms: u64,
    theme: Theme,
) -> Span<'static> {
    let dash = || Span::styled("-", theme.dim());
    match column {
        Column::Name | Column::State | Column::Event => Span::raw(""),
        Column::Kind => Span::raw(service.kind.to_string()),
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
        Column::Restarts => restarts(service.status.restarts, theme),
        Column::Uptime => match service.status.started_at_ms {
            Some(started) if service.status.state.is_up() => {
                Span::raw(format_duration_ms(now_ms.saturating_sub(started)))
            }
            _ => dash(),
        },
        Column::Ports if service.status.ports.is_empty() => dash(),
        Column::Ports => Span::raw(
            service
                .status
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        // Figures of a stopped instance would only mislead.
        Column::Cpu | Column::Memory | Column::Trend if !service.status.state.is_up() => dash(),
        Column::Cpu | Column::Memory | Column::Trend => resource_cell(resources, column, theme),
    }
}

fn restarts(count: u32, theme: Theme) -> Span<'static> {
    if count > 0 {
        Span::styled(count.to_string(), theme.fg(Color::Yellow))
    } else {
        Span::raw("0")
    }
}

fn resource_cell(
    resources: Option<&ResourceHistory>,
    column: Column,
    theme: Theme,
) -> Span<'static> {
    let dash = || Span::styled("-", theme.dim());
    match column {
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
        _ => dash(),
    }
}

/// A group's CPU and memory: the sums over its replicas that are up, sample by
/// sample from the newest (all are sampled on the same tick).
fn group_resources(state: &TuiState, row: &TableRow) -> Option<ResourceHistory> {
    let histories: Vec<&ResourceHistory> = row
        .members
        .iter()
        .filter(|index| {
            state
                .snapshot
                .services
                .get(**index)
                .is_some_and(|service| service.status.state.is_up())
        })
        .filter_map(|index| state.resources.get(&**state.log_key(*index)?))
        .collect();
    let samples = histories.iter().map(|h| h.cpu_percent.len()).max()?;
    let mut sum = ResourceHistory::default();
    for from_end in (0..samples).rev() {
        let at = |len: usize| len.checked_sub(from_end + 1);
        sum.cpu_percent.push_back(
            histories
                .iter()
                .filter_map(|h| h.cpu_percent.get(at(h.cpu_percent.len())?))
                .sum(),
        );
        sum.rss_bytes.push_back(
            histories
                .iter()
                .filter_map(|h| h.rss_bytes.get(at(h.rss_bytes.len())?))
                .sum(),
        );
    }
    Some(sum)
}

/// A cell of a replicated service's row, summing up its replicas.
fn group_cell(
    state: &TuiState,
    row: &TableRow,
    column: Column,
    now_ms: u64,
    theme: Theme,
) -> Span<'static> {
    let members = instances(state, row);
    let dash = || Span::styled("-", theme.dim());
    let up: Vec<&&ServiceSnapshot> = members
        .iter()
        .filter(|service| service.status.state.is_up())
        .collect();
    match column {
        Column::Name | Column::State | Column::Event => Span::raw(""),
        Column::Kind => members
            .first()
            .map_or_else(dash, |service| Span::raw(service.kind.to_string())),
        Column::Health => {
            let probed: Vec<HealthStatus> = members
                .iter()
                .filter_map(|service| service.status.health)
                .collect();
            let healthy = probed
                .iter()
                .filter(|health| **health == HealthStatus::Healthy)
                .count();
            if probed.is_empty() {
                dash()
            } else if healthy == probed.len() {
                Span::raw(HealthStatus::Healthy.as_str())
            } else if probed.contains(&HealthStatus::Unhealthy) {
                Span::styled(format!("{healthy}/{}", probed.len()), theme.error())
            } else {
                Span::raw(format!("{healthy}/{}", probed.len()))
            }
        }
        Column::Pid => group_pids(&members).map_or_else(dash, Span::raw),
        Column::Generation => {
            let generations = members.iter().map(|service| service.status.generation.0);
            match (generations.clone().min(), generations.max()) {
                (Some(low), Some(high)) if low != high => Span::raw(format!("{low}-{high}")),
                (Some(low), _) => Span::raw(low.to_string()),
                _ => dash(),
            }
        }
        Column::Restarts => restarts(
            members.iter().map(|service| service.status.restarts).sum(),
            theme,
        ),
        // The youngest replica's: a replica that just restarted shows.
        Column::Uptime => match up.iter().filter_map(|s| s.status.started_at_ms).max() {
            Some(started) => Span::raw(format_duration_ms(now_ms.saturating_sub(started))),
            None => dash(),
        },
        Column::Ports => match ports_text(state, row) {
            ports if ports.is_empty() => dash(),
            ports => Span::raw(ports),
        },
        Column::Cpu | Column::Memory | Column::Trend if up.is_empty() => dash(),
        Column::Cpu | Column::Memory | Column::Trend => {
            resource_cell(group_resources(state, row).as_ref(), column, theme)
        }
    }
}

/// The last event with its age, e.g. `build failed: … · 12s ago`, after `label` if
/// there is one.
fn last_event_spans(
    label: Option<&str>,
    (event, at_ms): (&str, u64),
    style: Style,
    cells: usize,
    now_ms: u64,
    theme: Theme,
) -> Vec<Span<'static>> {
    let event = match label {
        Some(label) => format!("{label}: {event}"),
        None => event.to_owned(),
    };
    let age = format!(" · {}", format_ago(now_ms.saturating_sub(at_ms)));
    let text_cells = cells.saturating_sub(width(&age));
    if text_cells < 6 {
        return vec![Span::styled(fit(&event, cells), style)];
    }
    let event = truncate(&event, text_cells).into_owned();
    let pad = cells.saturating_sub(width(&event) + width(&age));
    vec![
        Span::styled(event, style),
        Span::styled(age, theme.dim()),
        Span::raw(" ".repeat(pad)),
    ]
}

fn troubled(service: &ServiceSnapshot) -> bool {
    matches!(
        service.status.state,
        ServiceState::Failed
            | ServiceState::Unhealthy
            | ServiceState::Backoff
            | ServiceState::Unknown
    ) || service.status.build == Some(BuildStatus::Failed)
}

/// `waiting for db`, `starting 3s · connection refused`, or the last event with its
/// age; a replica's after its name (`label`) in its group's row.
fn event_spans(
    state: &TuiState,
    service: &ServiceSnapshot,
    label: Option<&str>,
    cells: usize,
    now_ms: u64,
    theme: Theme,
) -> Vec<Span<'static>> {
    let style = if troubled(service) {
        theme.fg(Color::Red)
    } else {
        theme.dim()
    };
    let labelled = |text: String| match label {
        Some(label) => format!("{label}: {text}"),
        None => text,
    };
    if service.status.state == ServiceState::Waiting
        && let Some(dependency) = &service.waiting_for
    {
        let text = labelled(format!("waiting for {dependency}"));
        return vec![Span::styled(fit(&text, cells), theme.fg(Color::Blue))];
    }
    if let Some(note) = service.starting_note(now_ms) {
        return vec![Span::styled(
            fit(&labelled(note), cells),
            theme.fg(Color::Yellow),
        )];
    }
    match state.last_event(&service.name) {
        Some(event) => last_event_spans(label, event, style, cells, now_ms, theme),
        None if service.inactive && !service.profiles.is_empty() => {
            let text = format!("profile {}", service.profiles.join(", "));
            vec![Span::styled(fit(&text, cells), theme.dim())]
        }
        None => vec![Span::raw(" ".repeat(cells))],
    }
}

/// A group's event: its first troubled replica's, else its first replica on its way
/// up, else the newest event of any replica or of the service as a whole (named
/// after the replica unless every replica's last event says the same).
fn group_event_spans(
    state: &TuiState,
    row: &TableRow,
    cells: usize,
    now_ms: u64,
    theme: Theme,
) -> Vec<Span<'static>> {
    let members = instances(state, row);
    let busy = |service: &&&ServiceSnapshot| {
        matches!(
            service.status.state,
            ServiceState::Waiting | ServiceState::Starting | ServiceState::Building
        )
    };
    let focus = members
        .iter()
        .find(|service| troubled(service))
        .or_else(|| members.iter().find(busy));
    if let Some(service) = focus {
        return event_spans(state, service, Some(&service.name), cells, now_ms, theme);
    }
    let events: Vec<(&str, (&str, u64))> = members
        .iter()
        .filter_map(|service| Some((service.name.as_str(), state.last_event(&service.name)?)))
        .collect();
    let newest_of_replicas = events.iter().max_by_key(|(_, (_, at))| *at).copied();
    let of_service = state.last_event(&row.service);
    let (label, event) = match (newest_of_replicas, of_service) {
        (Some(replica), Some(service)) if service.1 >= (replica.1).1 => (None, service),
        (Some((name, event)), _) => {
            // `healthy` from every replica needs no name; one replica's news does.
            let shared = events.len() == members.len()
                && events.iter().all(|(_, (text, _))| *text == event.0);
            ((!shared).then_some(name), event)
        }
        (None, Some(service)) => (None, service),
        (None, None) => return vec![Span::raw(" ".repeat(cells))],
    };
    last_event_spans(label, event, theme.dim(), cells, now_ms, theme)
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
    if state.rows.is_empty() {
        lines.push(Line::styled("  (no services yet)", theme.dim()));
    }
    let offset = table_offset(state, rows);
    for (index, row) in state.rows.iter().enumerate().skip(offset).take(rows) {
        let selected = index == state.selected;
        let single = match row.kind {
            RowKind::Group { .. } => None,
            RowKind::Single | RowKind::Replica => instance(state, row),
        };
        let mut spans = vec![Span::raw(if selected { MARKER } else { "  " })];
        for (position, (column, cells)) in columns.iter().enumerate() {
            if position > 0 {
                spans.push(Span::raw(" "));
            }
            let span = match (column, single) {
                (Column::Event, Some((service, _))) => {
                    spans.extend(event_spans(state, service, None, *cells, now_ms, theme));
                    continue;
                }
                (Column::Event, None) => {
                    spans.extend(group_event_spans(state, row, *cells, now_ms, theme));
                    continue;
                }
                (Column::Name, _) => Span::raw(name_text(state, row)),
                (Column::State, _) => state_span(state, row, theme),
                (_, Some((service, key))) => {
                    cell(service, state.resources.get(key), *column, now_ms, theme)
                }
                (_, None) => group_cell(state, row, *column, now_ms, theme),
            };
            spans.push(aligned(span, *cells, column.right_aligned()));
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
    offset.min(state.rows.len().saturating_sub(rows))
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
    fn replicas_ports_read_as_ranges() {
        assert_eq!(format_ports(vec![7003, 7003, 7003]), "7003");
        assert_eq!(format_ports(vec![8082, 8080, 8081, 9090]), "8080-8082,9090");
        assert_eq!(format_ports(vec![8080, 8081]), "8080,8081");
        assert_eq!(format_ports(Vec::new()), "");
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
