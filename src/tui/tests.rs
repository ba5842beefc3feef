//! Whole screens drawn into a `TestBackend` and pinned with insta, and the loop driven
//! by scripted keys. Times and pids are fixed by construction (a fixed `NOW`, fixed
//! pids), so the snapshots need no filters.

use std::io;
use std::sync::{Arc, Mutex};

use futures_util::stream;
use futures_util::StreamExt;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{Event as TerminalEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use tokio::sync::{mpsc, watch};
use unicode_width::UnicodeWidthStr;

use super::state::{Action, TuiMode, TuiState};
use super::{run_with, view, TuiExit, TuiSource};
use crate::event::{
    BuildStatus, Command, Generation, HealthStatus, InstanceStatus, ServiceKindName,
    ServiceSnapshot, ServiceState, Snapshot, WaitCondition, WaitingFor,
};
use crate::logs::{format_timestamp, LogLine, Stream};

/// 2026-11-26T06:25:08Z.
const NOW: u64 = 1_795_674_308_000;
const SECOND: u64 = 1000;

fn service(name: &str, state: ServiceState, pid: u32) -> ServiceSnapshot {
    ServiceSnapshot {
        name: name.into(),
        kind: ServiceKindName::Process,
        status: InstanceStatus {
            state,
            pid: state.is_up().then_some(pid),
            container: None,
            generation: Generation(1),
            restarts: 0,
            started_at_ms: Some(NOW - 192 * SECOND),
            ports: Vec::new(),
            health: None,
            probe_error: None,
            build: None,
            last_redeploy_at_ms: None,
        },
        last_event: None,
        last_event_at_ms: None,
        waiting_for: None,
        service: name.into(),
        replica: None,
        replicas: 1,
        profiles: Vec::new(),
        inactive: false,
    }
}

fn with_event(mut service: ServiceSnapshot, text: &str, ago_ms: u64) -> ServiceSnapshot {
    service.last_event = Some(text.into());
    service.last_event_at_ms = Some(NOW - ago_ms);
    service
}

fn healthy_fleet() -> Snapshot {
    let mut gateway = with_event(
        service("gateway", ServiceState::Healthy, 41_001),
        "healthy",
        190 * SECOND,
    );
    gateway.status.ports = vec![8080];
    gateway.status.generation = Generation(3);
    gateway.status.health = Some(HealthStatus::Healthy);
    let mut users = with_event(
        service("users", ServiceState::Healthy, 41_002),
        "redeployed (generation 6 replaced)",
        45 * SECOND,
    );
    users.status.ports = vec![8081];
    users.status.generation = Generation(7);
    users.status.restarts = 1;
    users.status.started_at_ms = Some(NOW - 45 * SECOND);
    users.status.health = Some(HealthStatus::Healthy);
    let mut orders = service("orders", ServiceState::Running, 41_003);
    orders.status.ports = vec![8082, 9082];
    let mut postgres = with_event(
        service("postgres", ServiceState::Healthy, 0),
        "healthy",
        200 * SECOND,
    );
    postgres.kind = ServiceKindName::Container;
    postgres.status.pid = None;
    postgres.status.container = Some("3f2a9c8e1b7d5a604c2e".into());
    postgres.status.ports = vec![5432];
    postgres.status.health = Some(HealthStatus::Healthy);
    postgres.status.started_at_ms = Some(NOW - 3_725 * SECOND);
    let notifications = with_event(
        service(
            "notification-dispatcher-worker-eu-west",
            ServiceState::Healthy,
            41_005,
        ),
        "started (pid 41005)",
        150 * SECOND,
    );
    Snapshot {
        project: "shop".into(),
        manifest: "/home/dev/shop/fleet.toml".into(),
        supervisor_pid: 41_000,
        services: vec![gateway, users, orders, postgres, notifications],
        shutting_down: false,
        profiles: Vec::new(),
    }
}

fn failing_fleet() -> Snapshot {
    let mut snapshot = healthy_fleet();
    let users = &mut snapshot.services[1];
    users.status.state = ServiceState::Failed;
    users.status.pid = None;
    users.status.build = Some(BuildStatus::Failed);
    users.status.health = None;
    users.last_event = Some("build failed: cargo exited with code 101".into());
    users.last_event_at_ms = Some(NOW - 12 * SECOND);
    let orders = &mut snapshot.services[2];
    orders.status.state = ServiceState::Backoff;
    orders.status.pid = None;
    orders.status.restarts = 3;
    orders.last_event = Some("killed by SIGKILL, restart 3 in 4s".into());
    orders.last_event_at_ms = Some(NOW - 2 * SECOND);
    let mut billing = service("billing", ServiceState::Waiting, 0);
    billing.waiting_for = Some(WaitingFor {
        service: "users".into(),
        condition: WaitCondition::Healthy,
        failed: false,
    });
    snapshot.services.insert(2, billing);
    snapshot
}

fn line(ms_ago: u64, stream: Stream, text: &str) -> LogLine {
    LogLine {
        timestamp: format_timestamp(NOW - ms_ago),
        stream,
        text: text.into(),
    }
}

fn gateway_log() -> Vec<LogLine> {
    vec![
        line(300_000, Stream::Stdout, "listening on 0.0.0.0:8080"),
        line(290_000, Stream::Stdout, "GET /health 200 0.4ms"),
        line(250_000, Stream::Stderr, "error: upstream users refused the connection"),
        line(200_000, Stream::Fleet, "exited with code 1, restart 1 in 400ms"),
        line(192_000, Stream::Fleet, "--- generation 3 started (pid 41001) ---"),
        line(191_000, Stream::Stdout, "listening on 0.0.0.0:8080"),
        line(
            120_000,
            Stream::Stdout,
            "GET /api/orders?customer=4711&include=items,shipping,invoices&page=1&per_page=100 200 12.1ms",
        ),
        line(60_000, Stream::Stdout, "GET /health 200 0.3ms"),
        line(1_000, Stream::Stderr, "warning: slow request: error budget at 80%"),
    ]
}

fn users_log() -> Vec<LogLine> {
    vec![
        line(
            20_000,
            Stream::Fleet,
            "--- build started: cargo build --release ---",
        ),
        line(
            15_000,
            Stream::Build,
            "   Compiling users v0.4.2 (/home/dev/shop/users)",
        ),
        line(13_000, Stream::Build, "error[E0308]: mismatched types"),
        line(13_000, Stream::Build, "  --> src/handlers.rs:41:17"),
        line(
            12_500,
            Stream::Build,
            "error: could not compile `users` (bin \"users\")",
        ),
        line(
            12_000,
            Stream::Fleet,
            "build failed: cargo exited with code 101",
        ),
    ]
}

/// A state showing `snapshot`, with `logs` for the first service, resources for all.
fn state_for(snapshot: Snapshot, no_color: bool, width: u16, height: u16) -> TuiState {
    let mut state = TuiState::new(TuiMode::Up, no_color);
    state.handle(Action::Resize { width, height });
    // Resources and logs go by log name: `ratings` for replica 1, `ratings.N` after.
    let names: Vec<String> = snapshot.services.iter().map(|s| s.log_name()).collect();
    state.apply_snapshot(Arc::new(snapshot), NOW);
    state.drain_requests();
    for (index, name) in names.iter().enumerate() {
        for sample in 0..12u64 {
            let cpu = ((sample * 7 + index as u64 * 3) % 20) as f32 / 2.0;
            let rss = (40 + index as u64 * 25 + sample % 3) * 1024 * 1024;
            state.set_resources(name, cpu, rss);
        }
    }
    state.push_log_lines("gateway", gateway_log());
    state.push_log_lines("users", users_log());
    state
}

fn screen(state: &TuiState, width: u16, height: u16) -> io::Result<(String, Buffer)> {
    // The test backend cannot fail (its error type is `Infallible`).
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let Ok(_) = terminal.draw(|frame| view::draw(frame, state, NOW));
    let buffer = terminal.backend().buffer().clone();
    Ok((buffer_text(&buffer), buffer))
}

/// The screen as text, one line per row, trailing spaces trimmed.
fn buffer_text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut row = String::new();
        let mut skip = 0;
        for x in 0..buffer.area.width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = buffer[(x, y)].symbol();
            skip = symbol.width().saturating_sub(1);
            row.push_str(symbol);
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn healthy_fleet_screen() -> io::Result<()> {
    let state = state_for(healthy_fleet(), true, 120, 24);
    let (text, _) = screen(&state, 120, 24)?;
    insta::assert_snapshot!("healthy_fleet", text);
    Ok(())
}

#[test]
fn a_starting_service_shows_how_long_and_what_its_probe_sees() -> io::Result<()> {
    let mut snapshot = healthy_fleet();
    let users = &mut snapshot.services[1];
    users.status.state = ServiceState::Starting;
    users.status.health = Some(HealthStatus::Starting);
    users.status.started_at_ms = Some(NOW - 12 * SECOND);
    users.status.probe_error = Some("connection refused".into());
    let state = state_for(snapshot, true, 120, 24);
    let (text, _) = screen(&state, 120, 24)?;
    assert!(
        text.contains("starting 12s · connection re"),
        "the users row does not say how long it has been starting:\n{text}"
    );
    Ok(())
}

#[test]
fn failing_service_shows_its_last_event_and_build_output() -> io::Result<()> {
    let mut state = state_for(failing_fleet(), true, 120, 24);
    state.handle(Action::Down);
    let (text, _) = screen(&state, 120, 24)?;
    insta::assert_snapshot!("failing_service", text);
    Ok(())
}

#[test]
fn search_results_are_highlighted() -> io::Result<()> {
    for no_color in [true, false] {
        let mut state = state_for(healthy_fleet(), no_color, 100, 24);
        state.handle(Action::StartSearch);
        for c in "error".chars() {
            state.handle(Action::InputChar(c));
        }
        state.handle(Action::InputSubmit);
        let (text, buffer) = screen(&state, 100, 24)?;
        if no_color {
            insta::assert_snapshot!("search_results", text);
        }
        // Each "error" on screen is highlighted; the newest (current) one more so.
        let mut highlighted = Vec::new();
        let body = state.areas().log_body;
        for y in body.y..body.y + body.height {
            let row: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            if let Some(x) = row.find("error") {
                let x = row[..x].chars().count() as u16;
                let cell = &buffer[(x, y)];
                if no_color {
                    assert!(cell.modifier.contains(Modifier::REVERSED), "row {y}");
                } else {
                    assert_eq!(cell.bg, Color::Yellow, "row {y}");
                }
                highlighted.push(cell.modifier.contains(Modifier::UNDERLINED));
            }
        }
        assert_eq!(highlighted, vec![false, true], "no_color {no_color}");
    }
    Ok(())
}

#[test]
fn help_overlay_lists_every_key() -> io::Result<()> {
    let mut state = state_for(healthy_fleet(), true, 80, 24);
    state.handle(Action::ToggleHelp);
    let (text, _) = screen(&state, 80, 24)?;
    insta::assert_snapshot!("help_overlay", text);
    for (keys, _) in super::keys::HELP {
        assert!(text.contains(keys), "{keys} missing from the help");
    }
    Ok(())
}

#[test]
fn narrow_terminal_cuts_with_ellipses() -> io::Result<()> {
    let state = state_for(healthy_fleet(), true, 60, 15);
    let (text, _) = screen(&state, 60, 15)?;
    insta::assert_snapshot!("narrow_60x15", text);
    assert!(text.lines().all(|row| row.width() <= 60));
    Ok(())
}

#[test]
fn quit_dialog_in_fleet_up() -> io::Result<()> {
    let mut state = state_for(healthy_fleet(), true, 80, 20);
    state.handle(Action::Quit);
    let (text, _) = screen(&state, 80, 20)?;
    insta::assert_snapshot!("quit_dialog", text);
    Ok(())
}

#[test]
fn merged_logs_wrapped_with_timestamps() -> io::Result<()> {
    let mut state = state_for(healthy_fleet(), true, 80, 24);
    state.handle(Action::ToggleAll);
    state.handle(Action::ToggleWrap);
    state.handle(Action::ToggleTimestamps);
    let (text, _) = screen(&state, 80, 24)?;
    insta::assert_snapshot!("merged_wrapped", text);
    Ok(())
}

#[test]
fn copy_mode_is_plain_text() -> io::Result<()> {
    let mut state = state_for(healthy_fleet(), true, 80, 12);
    state.handle(Action::ToggleCopy);
    let (text, _) = screen(&state, 80, 12)?;
    insta::assert_snapshot!("copy_mode", text);
    assert!(!text.contains('│') && !text.contains('─'));
    Ok(())
}

/// `ratings` on a socket with three replicas, one still starting; `worker` scaled to
/// zero; `mailcatcher` in a profile `fleet up` did not enable.
fn replicated_fleet() -> Snapshot {
    let mut snapshot = healthy_fleet();
    snapshot.services.truncate(2);
    for n in 1..=3u32 {
        let mut row = with_event(
            service(&format!("ratings.{n}"), ServiceState::Healthy, 41_100 + n),
            "healthy",
            (40 - u64::from(n)) * SECOND,
        );
        row.service = "ratings".into();
        row.replica = Some(n);
        row.replicas = 3;
        row.status.ports = vec![7003];
        row.status.health = Some(HealthStatus::Healthy);
        row.status.generation = Generation(2);
        row.status.started_at_ms = Some(NOW - (41 - u64::from(n)) * SECOND);
        snapshot.services.push(row);
    }
    let starting = &mut snapshot.services[4];
    starting.status.state = ServiceState::Starting;
    starting.status.health = Some(HealthStatus::Starting);
    starting.status.probe_error = Some("connection refused".into());
    starting.status.started_at_ms = Some(NOW - 3 * SECOND);
    starting.status.restarts = 1;
    let mut worker = with_event(
        service("worker", ServiceState::Stopped, 0),
        "scaled to 0",
        30 * SECOND,
    );
    worker.replicas = 0;
    snapshot.services.push(worker);
    let mut mailcatcher = service("mailcatcher", ServiceState::Stopped, 0);
    mailcatcher.inactive = true;
    mailcatcher.profiles = vec!["debug".into()];
    mailcatcher.status.generation = Generation(0);
    snapshot.services.push(mailcatcher);
    snapshot
}

/// Lines of the three replicas as they arrive: each replica's file is `ratings`,
/// `ratings.2`, `ratings.3`.
fn ratings_logs(state: &mut TuiState) {
    let arrivals = [
        ("ratings", 39_000, "listening on fd 3 (127.0.0.1:7003)"),
        ("ratings.2", 38_000, "listening on fd 3 (127.0.0.1:7003)"),
        ("ratings", 20_000, "GET /ratings/42 200 0.3ms"),
        (
            "ratings.3",
            3_000,
            "--- generation 2 started (pid 41103) ---",
        ),
        ("ratings.2", 2_000, "GET /ratings/7 200 0.2ms"),
        ("ratings.3", 1_000, "listening on fd 3 (127.0.0.1:7003)"),
    ];
    for (file, ms_ago, text) in arrivals {
        let stream = if text.starts_with("---") {
            Stream::Fleet
        } else {
            Stream::Stdout
        };
        state.push_log_lines(file, vec![line(ms_ago, stream, text)]);
    }
}

#[test]
fn a_replicated_service_is_one_row_that_opens_to_its_replicas() -> io::Result<()> {
    let mut state = state_for(replicated_fleet(), true, 120, 24);
    ratings_logs(&mut state);
    let (folded, _) = screen(&state, 120, 24)?;
    insta::assert_snapshot!("replicas_folded", folded);
    assert!(folded.contains("▹ ratings"), "{folded}");
    assert!(folded.contains("◐ 2/3 healthy · 1 starting"), "{folded}");
    assert!(folded.contains("○ 0 replicas"), "{folded}");
    assert!(
        !folded.contains("mailcatcher"),
        "inactive services hide:\n{folded}"
    );
    assert!(
        folded.contains("4 services (6 instances) · 1 inactive"),
        "{folded}"
    );

    // Open the group: its replicas show under it; its log merges theirs, labelled.
    for action in [Action::Down, Action::Down, Action::Expand] {
        state.handle(action);
    }
    let (open, _) = screen(&state, 120, 24)?;
    insta::assert_snapshot!("replicas_open", open);
    for replica in ["  ratings.1", "  ratings.2", "  ratings.3"] {
        assert!(open.contains(replica), "{replica} missing:\n{open}");
    }
    assert!(open.contains("ratings · all replicas"), "{open}");
    assert!(open.contains("ratings.1 │ GET /ratings/42"), "{open}");
    assert!(open.contains("space collapse · +/- scale"), "{open}");

    // A replica's own row and log; inactive services on `i`.
    state.handle(Action::Down);
    state.handle(Action::Down);
    state.handle(Action::ToggleInactive);
    state.handle(Action::Resize {
        width: 120,
        height: 30,
    });
    let (replica, _) = screen(&state, 120, 30)?;
    assert!(replica.contains("── ratings.2 ─"), "{replica}");
    assert!(replica.contains("mailcatcher"), "{replica}");
    assert!(replica.contains("○ inactive"), "{replica}");
    assert!(replica.contains("profile debug"), "{replica}");
    assert!(
        !replica.contains("│ GET"),
        "a replica's log has no prefix:\n{replica}"
    );
    Ok(())
}

#[test]
fn every_size_down_to_tiny_draws_without_panicking() -> io::Result<()> {
    let mut state = state_for(failing_fleet(), false, 60, 15);
    state.handle(Action::ToggleHelp);
    for (width, height) in [(60, 15), (30, 8), (10, 3), (1, 1), (200, 60)] {
        state.handle(Action::Resize { width, height });
        screen(&state, width, height)?;
    }
    let mut state = state_for(replicated_fleet(), false, 60, 15);
    ratings_logs(&mut state);
    for action in [
        Action::Down,
        Action::Down,
        Action::Expand,
        Action::ToggleAll,
    ] {
        state.handle(action);
        for (width, height) in [(60, 15), (30, 8), (10, 3), (1, 1), (200, 60)] {
            state.handle(Action::Resize { width, height });
            screen(&state, width, height)?;
        }
    }
    Ok(())
}

#[test]
fn three_hundred_services_render() -> io::Result<()> {
    let services = (0..300)
        .map(|n| {
            service(
                &format!("service-{n:03}"),
                ServiceState::Healthy,
                50_000 + n,
            )
        })
        .collect();
    let snapshot = Snapshot {
        project: "big".into(),
        services,
        ..Snapshot::default()
    };
    let mut state = state_for(snapshot, false, 160, 50);
    for _ in 0..250 {
        state.handle(Action::Down);
    }
    let (text, _) = screen(&state, 160, 50)?;
    assert!(text.contains("300 services"));
    assert!(
        text.contains("▸ service-250"),
        "the selection scrolls into view"
    );
    Ok(())
}

// ----- the loop ---------------------------------------------------------------------

fn key(c: char) -> io::Result<TerminalEvent> {
    Ok(TerminalEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

struct Harness {
    source: TuiSource,
    sent: Arc<Mutex<Vec<Command>>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    _events: mpsc::Sender<crate::event::Event>,
    _logs: mpsc::Sender<(String, Vec<LogLine>)>,
}

/// A source whose commands never finish, like a stop that takes its full grace period.
fn harness() -> Harness {
    harness_with(healthy_fleet())
}

fn harness_with(snapshot: Snapshot) -> Harness {
    let (snapshots, snapshot_receiver) = watch::channel(Arc::new(snapshot));
    let (events, event_receiver) = mpsc::channel(16);
    let (logs, log_receiver) = mpsc::channel(16);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    let source = TuiSource {
        snapshots: snapshot_receiver,
        events: event_receiver,
        logs: log_receiver,
        send: Arc::new(move |command| {
            if let Ok(mut sent) = record.lock() {
                sent.push(command);
            }
            Box::pin(std::future::pending())
        }),
        read_tail: Arc::new(|_: &str, _: usize| Ok(Vec::new())),
    };
    Harness {
        source,
        sent,
        snapshots,
        _events: events,
        _logs: logs,
    }
}

async fn drive(
    source: TuiSource,
    mode: TuiMode,
    keys: Vec<io::Result<TerminalEvent>>,
) -> io::Result<TuiExit> {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(100, 30));
    let input = stream::iter(keys).chain(stream::pending());
    run_with(
        &mut terminal,
        source,
        TuiState::new(mode, true),
        input,
        |_| Ok(()),
    )
    .await
}

#[tokio::test]
async fn keys_keep_working_while_a_command_is_in_flight() -> io::Result<()> {
    let harness = harness();
    let sent = harness.sent.clone();
    let exit = drive(
        harness.source,
        TuiMode::Attach,
        vec![key('s'), key('j'), key('r'), key('q')],
    )
    .await?;
    assert_eq!(exit, TuiExit::Quit);
    let sent = sent.lock().map(|sent| sent.clone()).unwrap_or_default();
    assert_eq!(
        sent,
        vec![
            Command::Stop {
                services: vec!["gateway".into()]
            },
            Command::Restart {
                services: vec!["users".into()]
            },
        ]
    );
    drop(harness.snapshots);
    Ok(())
}

#[tokio::test]
async fn keys_on_a_replicated_service_scale_it_and_act_on_it_or_one_replica() -> io::Result<()> {
    let harness = harness_with(replicated_fleet());
    let sent = harness.sent.clone();
    let keys = vec![
        key('j'),
        key('j'),
        key('+'),
        key('r'),
        key(' '),
        key('j'),
        key('j'),
        key('s'),
        key('-'),
        key('q'),
    ];
    let exit = drive(harness.source, TuiMode::Attach, keys).await?;
    assert_eq!(exit, TuiExit::Quit);
    let sent = sent.lock().map(|sent| sent.clone()).unwrap_or_default();
    assert_eq!(
        sent,
        vec![
            Command::Scale {
                counts: vec![("ratings".into(), 4)]
            },
            Command::Restart {
                services: vec!["ratings".into()]
            },
            Command::Stop {
                services: vec!["ratings.2".into()]
            },
            // Counted from the scale still on its way.
            Command::Scale {
                counts: vec![("ratings".into(), 3)]
            },
        ]
    );
    drop(harness.snapshots);
    Ok(())
}

#[tokio::test]
async fn q_then_y_in_fleet_up_stops_the_fleet() -> io::Result<()> {
    let harness = harness();
    let exit = drive(
        harness.source,
        TuiMode::Up,
        vec![key('q'), key('n'), key('q'), key('y')],
    )
    .await?;
    assert_eq!(exit, TuiExit::StopFleet);
    drop(harness.snapshots);
    Ok(())
}

#[tokio::test]
async fn the_tui_ends_when_the_fleet_does() -> io::Result<()> {
    let harness = harness();
    drop(harness.snapshots);
    let exit = drive(harness.source, TuiMode::Attach, Vec::new()).await?;
    assert_eq!(exit, TuiExit::FleetEnded);
    Ok(())
}

#[test]
fn resources_are_sampled_by_process_group_or_container_for_services_that_are_up() {
    use crate::runtime::resources::Target;
    let mut snapshot = healthy_fleet();
    snapshot.services.truncate(4);
    snapshot
        .services
        .push(service("stopped", ServiceState::Stopped, 41_006));
    assert_eq!(
        super::sample_targets(&snapshot),
        vec![
            ("gateway".to_string(), Target::Group(41_001)),
            ("users".to_string(), Target::Group(41_002)),
            ("orders".to_string(), Target::Group(41_003)),
            (
                "postgres".to_string(),
                Target::Container("3f2a9c8e1b7d5a604c2e".into())
            ),
        ]
    );
}
