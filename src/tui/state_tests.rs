//! The pure state updates of the table: selection, commands, the quit dialog, the
//! mouse. The helpers here build states for the log pane's tests too.

use super::*;
use crate::event::{Generation, InstanceStatus, ServiceKindName, ServiceSnapshot};
use crate::logs::{format_timestamp, LogLine, Stream};
use crate::manifest::MAX_REPLICAS;

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

// ----- replicas ---------------------------------------------------------------------

/// Replica `n` of `service`, which is set to `replicas`.
pub(super) fn replica(
    service: &str,
    n: u32,
    replicas: u32,
    state: ServiceState,
) -> ServiceSnapshot {
    let mut row = self::service(&format!("{service}.{n}"), state);
    row.service = service.into();
    row.replica = Some(n);
    row.replicas = replicas;
    row
}

/// `api` (healthy), `web` with `count` healthy replicas, `db` (stopped); 80x24, its
/// initial log loads answered "empty file".
pub(super) fn replicated(count: u32) -> TuiState {
    let mut state = TuiState::new(TuiMode::Attach, true);
    state.handle(Action::Resize {
        width: 80,
        height: 24,
    });
    state.apply_snapshot(replicated_snapshot(count), NOW);
    answer_loads(&mut state);
    state
}

pub(super) fn replicated_snapshot(count: u32) -> Arc<Snapshot> {
    let mut rows = vec![service("api", ServiceState::Healthy)];
    if count == 1 {
        rows.push(service("web", ServiceState::Healthy));
    } else {
        rows.extend((1..=count).map(|n| replica("web", n, count, ServiceState::Healthy)));
    }
    rows.push(service("db", ServiceState::Stopped));
    snapshot(rows)
}

/// Answers the state's initial loads with "empty file"; returns the files asked for.
pub(super) fn answer_loads(state: &mut TuiState) -> Vec<String> {
    let mut asked = Vec::new();
    for request in state.drain_requests() {
        if let Request::LoadOlder { service, .. } = request {
            state.prepend_log_lines(&service, Vec::new(), true);
            asked.push(service.to_string());
        }
    }
    asked
}

fn sent(requests: Vec<Request>) -> Vec<Command> {
    requests
        .into_iter()
        .filter_map(|request| match request {
            Request::Send(command) => Some(command),
            _ => None,
        })
        .collect()
}

fn scale(service: &str, count: u32) -> Command {
    Command::Scale {
        counts: vec![(service.into(), count)],
    }
}

fn one(name: &str) -> Vec<String> {
    vec![name.into()]
}

#[test]
fn a_group_row_acts_on_the_whole_service_and_a_replica_row_on_its_replica() {
    let mut state = replicated(3);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web"));
    state.handle(Action::ToggleExpand);
    state.handle(Action::Down);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web.2"));
    // (rows down from the group, action) -> command
    let table: [(usize, Action, Command); 6] = [
        (
            0,
            Action::Restart,
            Command::Restart {
                services: one("web"),
            },
        ),
        (
            0,
            Action::Redeploy,
            Command::Redeploy {
                services: one("web"),
            },
        ),
        (
            0,
            Action::StopStart,
            Command::Stop {
                services: one("web"),
            },
        ),
        (
            1,
            Action::Restart,
            Command::Restart {
                services: one("web.1"),
            },
        ),
        (
            2,
            Action::StopStart,
            Command::Stop {
                services: one("web.2"),
            },
        ),
        (
            3,
            Action::Redeploy,
            Command::Redeploy {
                services: one("web.3"),
            },
        ),
    ];
    for (below, action, command) in table {
        state.handle(Action::Top);
        state.handle(Action::Down);
        for _ in 0..below {
            state.handle(Action::Down);
        }
        assert_eq!(
            sent(state.handle(action.clone())),
            vec![command],
            "{action:?}"
        );
    }
    // A group with every replica stopped starts.
    let mut stopped: Vec<ServiceSnapshot> = (1..=2)
        .map(|n| replica("web", n, 2, ServiceState::Stopped))
        .collect();
    stopped.insert(0, service("api", ServiceState::Healthy));
    state.apply_snapshot(snapshot(stopped), NOW);
    state.handle(Action::Top);
    state.handle(Action::Down);
    assert_eq!(
        sent(state.handle(Action::StopStart)),
        vec![Command::Start {
            services: one("web")
        }]
    );
}

#[test]
fn plus_and_minus_scale_the_selected_service_counting_from_a_scale_on_its_way() {
    let mut state = replicated(3);
    state.handle(Action::Down);
    assert_eq!(sent(state.handle(Action::ScaleUp)), vec![scale("web", 4)]);
    assert_eq!(
        state.status.as_ref().map(|status| status.text.as_str()),
        Some("scale web=4…")
    );
    // Pressed again before the fleet answered: one more than asked, not than shown.
    assert_eq!(sent(state.handle(Action::ScaleUp)), vec![scale("web", 5)]);
    state.command_finished("scale web=4", Ok("scaled: web 3 -> 4".into()));
    state.command_finished("scale web=5", Err("port 8085 is busy".into()));
    assert_eq!(sent(state.handle(Action::ScaleDown)), vec![scale("web", 3)]);
    state.command_finished("scale web=3", Ok(String::new()));
    // The next snapshot shows what the fleet took: it counts from there again.
    state.apply_snapshot(replicated_snapshot(3), NOW);
    answer_loads(&mut state);
    assert_eq!(sent(state.handle(Action::ScaleUp)), vec![scale("web", 4)]);
    state.command_finished("scale web=4", Err("port 8084 is busy".into()));
    // On a replica row it scales its service.
    state.handle(Action::Expand);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web.1"));
    assert_eq!(sent(state.handle(Action::ScaleDown)), vec![scale("web", 2)]);
    // A single service scales too, down to zero and no further.
    let mut state = fleet(TuiMode::Attach);
    assert_eq!(sent(state.handle(Action::ScaleDown)), vec![scale("api", 0)]);
    state.command_finished("scale api=0", Ok(String::new()));
    let mut api = service("api", ServiceState::Stopped);
    api.replicas = 0;
    state.apply_snapshot(snapshot(vec![api.clone()]), NOW);
    assert!(sent(state.handle(Action::ScaleDown)).is_empty());
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("no replicas")));
    api.replicas = MAX_REPLICAS;
    state.apply_snapshot(snapshot(vec![api]), NOW);
    assert!(
        sent(state.handle(Action::ScaleUp)).is_empty(),
        "1000 is the most"
    );
    assert_eq!(
        sent(state.handle(Action::ScaleDown)),
        vec![scale("api", MAX_REPLICAS - 1)]
    );
}

#[test]
fn a_group_opens_and_folds_and_the_selection_stays_on_its_service() {
    let mut state = replicated(3);
    assert_eq!(state.rows().len(), 3, "api, web, db");
    state.handle(Action::Down);
    state.handle(Action::Expand);
    assert_eq!(state.rows().len(), 6);
    assert_eq!(
        state.selected_service(),
        Some("web"),
        "opening keeps the group"
    );
    state.handle(Action::Down);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web.2"));
    // Left on a replica folds its group and selects it.
    state.handle(Action::Collapse);
    assert_eq!(state.rows().len(), 3);
    assert_eq!(state.selected_service(), Some("web"));
    state.handle(Action::ToggleExpand);
    assert_eq!(state.rows().len(), 6);
    state.handle(Action::ToggleExpand);
    assert_eq!(state.rows().len(), 3);
    // Space and arrows do nothing on a single service.
    state.handle(Action::Top);
    state.handle(Action::ToggleExpand);
    state.handle(Action::Expand);
    assert_eq!(state.rows().len(), 3);
    // A click on the selected group opens it; on another row selects that row.
    state.handle(Action::Down);
    state.handle(Action::Click { column: 5, row: 3 });
    assert_eq!(state.rows().len(), 6);
    state.handle(Action::Click { column: 5, row: 5 });
    assert_eq!(state.selected_service(), Some("web.2"));
}

#[test]
fn the_selection_follows_a_service_as_it_gains_and_loses_replicas() {
    let mut state = replicated(1);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web"));
    assert!(!state.selected_row().is_some_and(|row| row.is_group()));
    state.apply_snapshot(replicated_snapshot(3), NOW);
    assert_eq!(state.selected_service(), Some("web"));
    assert!(state.selected_row().is_some_and(|row| row.is_group()));
    state.handle(Action::Expand);
    state.handle(Action::Bottom);
    state.handle(Action::Up);
    assert_eq!(state.selected_service(), Some("web.3"));
    // web.3 is scaled away: its service's row is selected.
    state.apply_snapshot(replicated_snapshot(2), NOW);
    assert_eq!(state.selected_service(), Some("web"));
    state.apply_snapshot(replicated_snapshot(1), NOW);
    assert_eq!(state.selected_service(), Some("web"));
    assert_eq!(state.rows().len(), 3);
}

#[test]
fn inactive_services_show_only_after_i() {
    let mut state = fleet(TuiMode::Attach);
    let mut debugger = service("debugger", ServiceState::Stopped);
    debugger.inactive = true;
    debugger.profiles = vec!["debug".into()];
    state.apply_snapshot(
        snapshot(vec![
            service("api", ServiceState::Healthy),
            debugger,
            service("db", ServiceState::Stopped),
        ]),
        NOW,
    );
    state.handle(Action::Bottom);
    assert_eq!(state.selected_service(), Some("db"));
    assert_eq!(state.rows().len(), 2);
    state.handle(Action::ToggleInactive);
    assert_eq!(state.rows().len(), 3);
    assert_eq!(
        state.selected_service(),
        Some("db"),
        "the selection stays put"
    );
    state.handle(Action::Up);
    assert_eq!(state.selected_service(), Some("debugger"));
    state.handle(Action::ToggleInactive);
    assert_eq!(state.rows().len(), 2);
}
