//! The run's memory of the fleet: every row's states over time, readiness, restarts
//! and incidents, from the supervisor's snapshots and events, and the live report of
//! incidents on stderr while they happen.
//!
//! # Theory of operation
//! One task follows the snapshot channel and the event broadcast until the supervisor
//! is gone (its snapshot sender drops), then hands its [`Recording`] back. States come
//! from snapshots (the supervisor does not broadcast state changes; it publishes at
//! most every few ms, so a state held for less may not be seen); restarts and
//! incidents come from events, which carry the reason and their time. Everything is
//! kept; the summary counts what happened before teardown began, by time, so the order
//! in which the recorder hears about the phase and the events does not matter. The
//! driver's phase only decides what is printed. [`Recording::note`] is the one place
//! that decides what an event means for the run.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::summary::{Incident, Restart, RestartCause, StateAt};
use crate::event::{Event, EventKind, ServiceKindName, ServiceState, Snapshot};
use crate::runtime::container::Docker;

/// Where the run is; the driver moves it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Starting the fleet and waiting until it is ready.
    Wait,
    /// CMD runs (and, with `--keep-on-failure`, the kept fleet after it).
    Command,
    /// The fleet is being stopped: nothing that happens now is an incident.
    Teardown,
}

/// One snapshot row's history.
#[derive(Debug, Clone)]
pub(super) struct RowRecord {
    pub(super) name: String,
    pub(super) service: String,
    pub(super) replica: Option<u32>,
    pub(super) kind: ServiceKindName,
    /// Its log's name (`web`, `web.2`).
    pub(super) log_name: String,
    pub(super) states: Vec<StateAt>,
    /// When it was first ready, ms since the epoch, and how long after its instance
    /// started.
    pub(super) ready_at_ms: Option<u64>,
    pub(super) ready_after_start_ms: Option<u64>,
    pub(super) restarts: Vec<Restart>,
    pub(super) incidents: Vec<Incident>,
    pub(super) last_probe_error: Option<String>,
    pub(super) pids: Vec<u32>,
    pub(super) containers: Vec<String>,
}

/// Everything the recorder saw.
#[derive(Debug, Clone, Default)]
pub(super) struct Recording {
    pub(super) rows: Vec<RowRecord>,
    /// Volumes mounted in the run's containers (anonymous ones included): teardown
    /// checks that each is gone.
    pub(super) volumes: Vec<String>,
}

/// What the recorder prints as it goes.
struct Live {
    started_at_ms: u64,
    /// Row names whose readiness was announced.
    announced: Vec<String>,
}

impl Recording {
    fn row(&mut self, name: &str) -> Option<&mut RowRecord> {
        self.rows.iter_mut().find(|row| row.name == name)
    }

    /// Takes in a snapshot: new rows, changed states, pids, containers, and readiness
    /// (the event says when a probe passed; a row without a probe, or a completed job,
    /// is ready when the snapshot says so).
    fn observe(&mut self, snapshot: &Snapshot, at_ms: u64, since: u64) {
        for row in &snapshot.services {
            if row.inactive {
                continue;
            }
            let index = match self.rows.iter().position(|known| known.name == row.name) {
                Some(index) => index,
                None => {
                    self.rows.push(RowRecord {
                        name: row.name.clone(),
                        service: if row.service.is_empty() {
                            row.name.clone()
                        } else {
                            row.service.clone()
                        },
                        replica: row.replica,
                        kind: row.kind,
                        log_name: row.log_name(),
                        states: Vec::new(),
                        ready_at_ms: None,
                        ready_after_start_ms: None,
                        restarts: Vec::new(),
                        incidents: Vec::new(),
                        last_probe_error: None,
                        pids: Vec::new(),
                        containers: Vec::new(),
                    });
                    self.rows.len() - 1
                }
            };
            let record = &mut self.rows[index];
            let state = row.status.state;
            if record.states.last().map(|last| last.state) != Some(state) {
                record.states.push(StateAt {
                    since_start_ms: at_ms.saturating_sub(since),
                    state,
                });
            }
            if let Some(pid) = row.status.pid
                && !record.pids.contains(&pid)
            {
                record.pids.push(pid);
            }
            if let Some(id) = &row.status.container
                && !record.containers.contains(id)
            {
                record.containers.push(id.clone());
            }
            if state == ServiceState::Starting && row.status.probe_error.is_some() {
                record.last_probe_error = row.status.probe_error.clone();
            }
            if state.is_ready() && record.ready_at_ms.is_none() {
                record.ready_at_ms = Some(at_ms);
                record.ready_after_start_ms = row
                    .status
                    .started_at_ms
                    .map(|started| at_ms.saturating_sub(started));
            }
        }
    }

    /// Takes in one event. Returns the incident text to report, if it is one.
    fn note(&mut self, event: &Event, since: u64) -> Option<String> {
        let row = self.row(&event.service)?;
        let since_start_ms = event.at_ms.saturating_sub(since);
        let mut incident = false;
        match &event.kind {
            EventKind::Started { pid, container } => {
                if let Some(pid) = pid
                    && !row.pids.contains(pid)
                {
                    row.pids.push(*pid);
                }
                if let Some(id) = container
                    && !row.containers.contains(id)
                {
                    row.containers.push(id.clone());
                }
            }
            EventKind::Healthy if row.ready_at_ms.is_none() => {
                row.ready_at_ms = Some(event.at_ms);
            }
            EventKind::Exited {
                status,
                restart_in_ms,
                cause,
                ..
            } => {
                // A one-shot job that exits 0 and is not restarted has completed.
                let completed = status.success() && restart_in_ms.is_none() && cause.is_none();
                if !completed {
                    incident = true;
                    if restart_in_ms.is_some() || cause.is_some() {
                        let (cause, reason) = match cause {
                            Some(crate::event::ProbeCause::Unhealthy { .. }) => {
                                (RestartCause::Unhealthy, cause.map(|c| c.to_string()))
                            }
                            Some(crate::event::ProbeCause::NotReady { .. }) => {
                                (RestartCause::NotReady, cause.map(|c| c.to_string()))
                            }
                            None => (RestartCause::Crash, None),
                        };
                        row.restarts.push(Restart {
                            since_start_ms,
                            generation: event.generation.0,
                            cause,
                            reason: reason.unwrap_or_else(|| status.to_string()),
                            restart_in_ms: *restart_in_ms,
                        });
                    }
                }
            }
            EventKind::NotReady { .. } => {
                incident = true;
                row.restarts.push(Restart {
                    since_start_ms,
                    generation: event.generation.0,
                    cause: RestartCause::NotReady,
                    reason: event.kind.to_string(),
                    restart_in_ms: None,
                });
            }
            EventKind::Unhealthy { .. }
            | EventKind::GaveUp { .. }
            | EventKind::StartFailed { .. }
            | EventKind::BuildFailed { .. } => incident = true,
            _ => {}
        }
        if !incident {
            return None;
        }
        let text = format!("{}: {}", event.service, event.kind);
        row.incidents.push(Incident {
            since_start_ms,
            text: text.clone(),
        });
        Some(text)
    }
}

/// Follows the fleet until its supervisor is gone; prints incidents (and, while the
/// fleet starts, each instance that becomes ready) on stderr as they happen.
pub(super) async fn record(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut events: broadcast::Receiver<Event>,
    mut phase: watch::Receiver<Phase>,
    started_at_ms: u64,
    docker: Option<Docker>,
) -> Recording {
    let mut recording = Recording::default();
    let mut live = Live {
        started_at_ms,
        announced: Vec::new(),
    };
    let mut events_open = true;
    let mut phase_open = true;
    let first = snapshots.borrow_and_update().clone();
    recording.observe(&first, crate::event::now_ms(), started_at_ms);
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                recording.observe(&snapshot, crate::event::now_ms(), started_at_ms);
                // Also just after the wait ended: the driver may have seen the
                // snapshot that made the fleet ready before this task did.
                if *phase.borrow() < Phase::Teardown {
                    live.announce_ready(&recording);
                }
            }
            event = events.recv(), if events_open => match event {
                Ok(event) => {
                    if let Some(text) = recording.note(&event, started_at_ms)
                        && *phase.borrow() < Phase::Teardown
                    {
                        crate::note!("fleet: {text}");
                    }
                    if let (EventKind::Started { container: Some(id), .. }, Some(docker)) =
                        (&event.kind, &docker)
                    {
                        for volume in docker.volumes_of(id).await {
                            if !recording.volumes.contains(&volume) {
                                recording.volumes.push(volume);
                            }
                        }
                    }
                }
                // A lagging reader lost events, not states: the snapshots still come.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            // Only to notice a driver that is gone; the phase is read where it matters.
            changed = phase.changed(), if phase_open => {
                if changed.is_err() {
                    phase_open = false;
                }
            }
        }
    }
    // What the supervisor said last, then the events still queued.
    let last = snapshots.borrow().clone();
    recording.observe(&last, crate::event::now_ms(), started_at_ms);
    while let Ok(event) = events.try_recv() {
        recording.note(&event, started_at_ms);
    }
    recording
}

impl Live {
    /// `fleet: users healthy after 0.4s`, once per row.
    fn announce_ready(&mut self, recording: &Recording) {
        for row in &recording.rows {
            let (Some(ready_at), Some(state)) = (row.ready_at_ms, row.states.last()) else {
                continue;
            };
            if self.announced.contains(&row.name) {
                continue;
            }
            self.announced.push(row.name.clone());
            crate::note!(
                "fleet: {} {} after {}",
                row.name,
                state.state,
                crate::event::format_duration_ms(ready_at.saturating_sub(self.started_at_ms))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Generation, InstanceStatus, ProbeCause, ServiceSnapshot};

    fn snapshot(rows: &[(&str, ServiceState)]) -> Snapshot {
        Snapshot {
            services: rows
                .iter()
                .map(|(name, state)| ServiceSnapshot {
                    name: name.to_string(),
                    kind: ServiceKindName::Process,
                    status: InstanceStatus {
                        state: *state,
                        pid: Some(100),
                        started_at_ms: Some(1_000),
                        ..InstanceStatus::stopped(Vec::new())
                    },
                    last_event: None,
                    last_event_at_ms: None,
                    waiting_for: None,
                    service: name.split('.').next().unwrap_or(name).to_string(),
                    replica: name.split_once('.').and_then(|(_, n)| n.parse().ok()),
                    replicas: 1,
                    profiles: Vec::new(),
                    inactive: false,
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn event(service: &str, at_ms: u64, kind: EventKind) -> Event {
        Event {
            at_ms,
            service: service.to_string(),
            generation: Generation(1),
            kind,
        }
    }

    #[test]
    fn states_are_recorded_once_per_change_and_readiness_once() {
        let mut recording = Recording::default();
        recording.observe(&snapshot(&[("db", ServiceState::Starting)]), 1_010, 1_000);
        recording.observe(&snapshot(&[("db", ServiceState::Starting)]), 1_020, 1_000);
        recording.observe(&snapshot(&[("db", ServiceState::Healthy)]), 1_300, 1_000);
        recording.observe(&snapshot(&[("db", ServiceState::Healthy)]), 1_400, 1_000);
        recording.observe(&snapshot(&[("db", ServiceState::Stopped)]), 1_500, 1_000);
        let row = &recording.rows[0];
        let states: Vec<(u64, ServiceState)> = row
            .states
            .iter()
            .map(|at| (at.since_start_ms, at.state))
            .collect();
        assert_eq!(
            states,
            [
                (10, ServiceState::Starting),
                (300, ServiceState::Healthy),
                (500, ServiceState::Stopped)
            ]
        );
        assert_eq!(row.ready_at_ms, Some(1_300));
        assert_eq!(row.ready_after_start_ms, Some(300));
        assert_eq!(row.pids, [100]);
    }

    #[test]
    fn crashes_restarts_and_unhealthy_turns_are_incidents_and_completion_is_not() {
        let mut recording = Recording::default();
        recording.observe(
            &snapshot(&[
                ("api", ServiceState::Healthy),
                ("job", ServiceState::Running),
            ]),
            1_000,
            1_000,
        );
        let crash = EventKind::Exited {
            status: ExitStatus::Code(1),
            restart_in_ms: Some(100),
            restart_count: 1,
            cause: None,
        };
        assert_eq!(
            recording.note(&event("api", 2_000, crash), 1_000),
            Some("api: exited with code 1, restart 1 in 100ms".to_string())
        );
        let unhealthy = EventKind::Exited {
            status: ExitStatus::Signal(15),
            restart_in_ms: Some(200),
            restart_count: 2,
            cause: Some(ProbeCause::Unhealthy { failures: 3 }),
        };
        assert!(recording
            .note(&event("api", 3_000, unhealthy), 1_000)
            .is_some());
        let completed = EventKind::Exited {
            status: ExitStatus::Code(0),
            restart_in_ms: None,
            restart_count: 0,
            cause: None,
        };
        assert_eq!(
            recording.note(&event("job", 3_000, completed), 1_000),
            None,
            "a one-shot job that completed did not crash"
        );
        let api = &recording.rows[0];
        let restarts: Vec<(u64, RestartCause, &str)> = api
            .restarts
            .iter()
            .map(|r| (r.since_start_ms, r.cause, r.reason.as_str()))
            .collect();
        assert_eq!(
            restarts,
            [
                (1_000, RestartCause::Crash, "exited with code 1"),
                (
                    2_000,
                    RestartCause::Unhealthy,
                    "unhealthy (3 failed probes)"
                )
            ]
        );
        assert_eq!(recording.rows[0].incidents.len(), 2);
        assert!(recording.rows[1].incidents.is_empty());
    }
}
