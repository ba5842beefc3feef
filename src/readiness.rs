//! What "the fleet is ready" means, for `fleet up --wait` and `fleet run`: which
//! snapshot rows a selection covers, whether they are all ready, failed for good or
//! still on their way, and the report that names each laggard with its state, its last
//! probe error and the tail of its log.
//!
//! Pure over [`Snapshot`] rows (the report also reads log tails); it neither waits nor
//! talks to a supervisor, so the socket client of `up --wait` and the in-process
//! driver of `fleet run` decide the same way.

use std::path::Path;

use crate::event::{ServiceSnapshot, ServiceState, Snapshot};

/// How many log lines the report shows per laggard.
pub const REPORT_LOG_LINES: usize = 20;

/// Where a selection of services stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every row is healthy, running without a probe, or completed.
    Ready,
    /// A row failed for good, or waits for a dependency that did: waiting longer
    /// cannot help.
    Failed,
    /// Some rows are still on their way.
    Pending,
}

/// The rows of `snapshot` that `selected` (service names, or replica names) covers:
/// every replica of a selected service, none of one scaled to zero.
pub fn selected_rows(snapshot: &Snapshot, selected: &[String]) -> Vec<ServiceSnapshot> {
    snapshot
        .services
        .iter()
        .filter(|row| selected.contains(&row.service) || selected.contains(&row.name))
        .filter(|row| row.replica.unwrap_or(1) <= row.replicas)
        .cloned()
        .collect()
}

/// A row that waits for a dependency which failed for good: it will not start.
pub fn blocked(row: &ServiceSnapshot) -> bool {
    row.status.state == ServiceState::Waiting && row.waiting_for.as_ref().is_some_and(|w| w.failed)
}

/// Whether `rows` are ready, failed for good, or pending.
pub fn verdict(rows: &[ServiceSnapshot]) -> Verdict {
    if rows
        .iter()
        .any(|row| row.status.state == ServiceState::Failed || blocked(row))
    {
        return Verdict::Failed;
    }
    if rows.iter().all(|row| row.status.state.is_ready()) {
        Verdict::Ready
    } else {
        Verdict::Pending
    }
}

/// What a row that is not ready is doing: `(waiting for db (healthy))`, ` for 12s, last
/// probe: connection refused` for a starting one, else its last event.
pub fn laggard_detail(row: &ServiceSnapshot, now_ms: u64) -> String {
    if let Some(waiting) = &row.waiting_for {
        return format!(" (waiting for {waiting})");
    }
    if row.status.state == ServiceState::Starting
        && let Some(since) = row.status.started_at_ms
    {
        let mut text = format!(
            " for {}",
            crate::event::format_duration_ms(now_ms.saturating_sub(since))
        );
        if let Some(error) = &row.status.probe_error {
            text.push_str(&format!(", last probe: {error}"));
        }
        return text;
    }
    row.last_event
        .as_ref()
        .map(|event| format!(" ({event})"))
        .unwrap_or_default()
}

/// One paragraph per row that is not ready (`fine` says which are): its name, state
/// and [`laggard_detail`], then the last lines of its log, each labelled.
pub fn laggard_report(
    rows: &[ServiceSnapshot],
    fine: impl Fn(&ServiceSnapshot) -> bool,
    log_dir: &Path,
    now_ms: u64,
) -> String {
    let mut report = String::new();
    for row in rows.iter().filter(|row| !fine(row)) {
        report.push_str(&format!(
            "\n{}: {}{}\n",
            row.name,
            row.status.state,
            laggard_detail(row, now_ms)
        ));
        if let Ok(lines) = crate::logs::read_tail(log_dir, &row.log_name(), REPORT_LOG_LINES) {
            for line in lines {
                report.push_str(&format!("  {} | {}\n", row.name, line.text));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Generation, InstanceStatus, ServiceKindName, WaitCondition, WaitingFor};

    fn row(name: &str, state: ServiceState) -> ServiceSnapshot {
        let (service, replica) = match name.split_once('.') {
            Some((service, number)) => (service.to_string(), number.parse().ok()),
            None => (name.to_string(), None),
        };
        ServiceSnapshot {
            name: name.to_string(),
            kind: ServiceKindName::Process,
            status: InstanceStatus {
                state,
                generation: Generation(1),
                ..InstanceStatus::stopped(Vec::new())
            },
            last_event: None,
            last_event_at_ms: None,
            waiting_for: None,
            service,
            replica,
            replicas: replica.map_or(1, |_| 2),
            profiles: Vec::new(),
            inactive: false,
        }
    }

    #[test]
    fn every_replica_of_a_selected_service_is_a_row() {
        let snapshot = Snapshot {
            services: vec![
                row("db", ServiceState::Healthy),
                row("web.1", ServiceState::Healthy),
                row("web.2", ServiceState::Starting),
                row("other", ServiceState::Stopped),
            ],
            ..Snapshot::default()
        };
        let rows = selected_rows(&snapshot, &["db".into(), "web".into()]);
        let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
        assert_eq!(names, ["db", "web.1", "web.2"]);
        assert_eq!(verdict(&rows), Verdict::Pending);
    }

    #[test]
    fn ready_failed_and_blocked() {
        let ready = [
            row("a", ServiceState::Healthy),
            row("b", ServiceState::Running),
            row("c", ServiceState::Completed),
        ];
        assert_eq!(verdict(&ready), Verdict::Ready);
        let failed = [
            row("a", ServiceState::Healthy),
            row("b", ServiceState::Failed),
        ];
        assert_eq!(verdict(&failed), Verdict::Failed);
        let mut waiting = row("c", ServiceState::Waiting);
        waiting.waiting_for = Some(WaitingFor {
            service: "b".into(),
            condition: WaitCondition::Healthy,
            failed: false,
        });
        assert_eq!(verdict(std::slice::from_ref(&waiting)), Verdict::Pending);
        if let Some(waiting_for) = &mut waiting.waiting_for {
            waiting_for.failed = true;
        }
        assert_eq!(verdict(&[waiting]), Verdict::Failed);
    }

    #[test]
    fn a_starting_laggard_says_how_long_and_what_its_probe_saw() {
        let mut starting = row("api", ServiceState::Starting);
        starting.status.started_at_ms = Some(1_000);
        starting.status.probe_error = Some("connection refused".into());
        assert_eq!(
            laggard_detail(&starting, 13_000),
            " for 12s, last probe: connection refused"
        );
        let mut crashed = row("api", ServiceState::Backoff);
        crashed.last_event = Some("exited with code 1, restart 2 in 400ms".into());
        assert_eq!(
            laggard_detail(&crashed, 0),
            " (exited with code 1, restart 2 in 400ms)"
        );
    }
}
