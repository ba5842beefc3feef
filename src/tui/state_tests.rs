//! The pure state updates of the table: selection, commands, the quit dialog, the
//! mouse. The helpers here build states for the log pane's tests too.

use super::*;
use crate::event::{Generation, InstanceStatus, ServiceKindName, ServiceSnapshot};
use crate::logs::{format_timestamp, LogLine, Stream};

pub(super) const NOW: u64 = 1_795_674_308_000;

pub(super) fn service(name: &str, state: ServiceState) -> ServiceSnapshot {
    ServiceSnapshot {
        name: name.into(),
        kind: ServiceKindName::Process,
        status: InstanceStatus {
            state,
            pid: state.is_up().then_some(4242),
            container: None,
            generation: Generation(1),
            restarts: 0,
            started_at_ms: Some(NOW - 60_000),
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

pub(super) fn snapshot(services: Vec<ServiceSnapshot>) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        project: "demo".into(),
        manifest: "fleet.toml".into(),
        supervisor_pid: 1,
        services,
        shutting_down: false,
        profiles: Vec::new(),
    })
}

pub(super) fn log_line(n: usize) -> LogLine {
    LogLine {
        timestamp: format_timestamp(NOW + n as u64),
        stream: Stream::Stdout,
        text: format!("line {n}"),
    }
}

/// A state with services `api` (healthy) and `db` (stopped), 80x24, whose initial log
/// loads answered "empty file".
pub(super) fn fleet(mode: TuiMode) -> TuiState {
    let mut state = TuiState::new(mode, true);
    state.handle(Action::Resize {
        width: 80,
        height: 24,
    });
    state.apply_snapshot(
        snapshot(vec![
            service("api", ServiceState::Healthy),
            service("db", ServiceState::Stopped),
        ]),
        NOW,
    );
    for request in state.drain_requests() {
        if let Request::LoadOlder { service, .. } = request {
            state.prepend_log_lines(&service, Vec::new(), true);
        }
    }
    state
}

pub(super) fn push(state: &mut TuiState, service: &str, range: std::ops::Range<usize>) {
    state.push_log_lines(service, range.map(log_line).collect());
}

pub(super) fn view(state: &TuiState) -> &LogView {
    state.current_view().expect("a selected service has a view")
}

#[test]
fn selection_stays_within_the_services() {
    let mut state = fleet(TuiMode::Attach);
    state.handle(Action::Up);
    assert_eq!(state.selected_service(), Some("api"));
    state.handle(Action::Down);
    state.handle(Action::Down);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("db"));
    state.handle(Action::PageUp);
    assert_eq!(state.selected_service(), Some("api"));
    state.handle(Action::Bottom);
    assert_eq!(state.selected_service(), Some("db"));
}

#[test]
fn selection_follows_the_service_when_the_snapshot_reorders() {
    let mut state = fleet(TuiMode::Attach);
    state.handle(Action::Down);
    state.apply_snapshot(
        snapshot(vec![
            service("db", ServiceState::Stopped),
            service("api", ServiceState::Healthy),
        ]),
        NOW,
    );
    assert_eq!(state.selected_service(), Some("db"));
    state.apply_snapshot(snapshot(vec![service("api", ServiceState::Healthy)]), NOW);
    assert_eq!(state.selected_service(), Some("api"));
}

#[test]
fn s_stops_a_running_service_and_starts_a_stopped_one() {
    let mut state = fleet(TuiMode::Attach);
    assert_eq!(
        state.handle(Action::StopStart),
        vec![Request::Send(Command::Stop {
            services: vec!["api".into()]
        })]
    );
    state.handle(Action::Down);
    assert_eq!(
        state.handle(Action::StopStart),
        vec![Request::Send(Command::Start {
            services: vec!["db".into()]
        })]
    );
    assert_eq!(
        state.handle(Action::Restart),
        vec![Request::Send(Command::Restart {
            services: vec!["db".into()]
        })]
    );
    state.command_finished("restart db", Err("unknown_service".into()));
    assert!(state.status.as_ref().is_some_and(|status| status.error));
}

#[test]
fn q_in_up_mode_asks_first_y_stops_and_escape_goes_back() {
    let mut state = fleet(TuiMode::Up);
    assert!(state.handle(Action::Quit).is_empty());
    assert_eq!(state.mode(), Mode::ConfirmQuit);
    assert!(state.handle(Action::ConfirmNo).is_empty());
    assert_eq!(state.mode(), Mode::Normal);
    state.handle(Action::Quit);
    assert_eq!(
        state.handle(Action::ConfirmYes),
        vec![Request::StopFleetAndQuit]
    );
}

#[test]
fn q_in_attach_mode_quits_and_ctrl_c_never_stops_an_attached_fleet() {
    let mut state = fleet(TuiMode::Attach);
    assert_eq!(state.handle(Action::Quit), vec![Request::Quit]);
    assert_eq!(state.handle(Action::Interrupt), vec![Request::Quit]);
    let mut up = fleet(TuiMode::Up);
    assert_eq!(
        up.handle(Action::Interrupt),
        vec![Request::StopFleetAndQuit]
    );
}

#[test]
fn a_click_selects_the_row_under_the_mouse() {
    let mut state = fleet(TuiMode::Attach);
    // Row 0 is the header line, row 1 the column titles, row 3 the second service.
    state.handle(Action::Click { column: 5, row: 3 });
    assert_eq!(state.selected_service(), Some("db"));
    let log_row = state.areas().log_body.y;
    state.handle(Action::Click {
        column: 5,
        row: log_row,
    });
    assert_eq!(state.focus(), Pane::Log);
}
