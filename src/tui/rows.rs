//! The service table's rows, derived from the snapshot: one row per service, a
//! replicated service's replicas under it when it is expanded.
//!
//! The snapshot has one row per replica (`web.1`, `web.2`, ...). The table shows a
//! replicated service as one *group* row that sums its replicas up, and its replicas
//! only when the user expands it; a service with one instance (or scaled to zero, when
//! one stopped row named after the service remains) is a *single* row, as it always
//! was. Services no active profile enables and nobody started (`inactive`) are left
//! out unless asked for, as `fleet ps` leaves them out without `--all`.
//!
//! Pure: [`build`] is a function of the snapshot, the expanded services and whether
//! inactive services show. [`super::state`] keeps the result and the selection in it.

use std::collections::{HashMap, HashSet};

use crate::event::{ServiceSnapshot, ServiceState, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A service with one instance: the snapshot's row as it is.
    Single,
    /// A replicated service's summary; its replicas follow it when `expanded`.
    Group { expanded: bool },
    /// One replica, under its expanded group.
    Replica,
}

/// One line of the service table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    pub kind: RowKind,
    /// The service the row belongs to: what `scale` takes.
    pub service: String,
    /// Indices into the snapshot's services: the row's own, or a group's replicas in
    /// snapshot order.
    pub members: Vec<usize>,
}

impl TableRow {
    /// The name commands on this row take: the service for a group (all its
    /// replicas), the snapshot row's own name otherwise (`web`, or `web.2`).
    pub fn target<'a>(&'a self, snapshot: &'a Snapshot) -> &'a str {
        match self.kind {
            RowKind::Group { .. } => &self.service,
            RowKind::Single | RowKind::Replica => self
                .members
                .first()
                .and_then(|index| snapshot.services.get(*index))
                .map_or(self.service.as_str(), |row| row.name.as_str()),
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self.kind, RowKind::Group { .. })
    }

    /// The snapshot rows behind this row.
    pub fn instances<'a>(
        &'a self,
        snapshot: &'a Snapshot,
    ) -> impl Iterator<Item = &'a ServiceSnapshot> + 'a {
        self.members
            .iter()
            .filter_map(|index| snapshot.services.get(*index))
    }

    /// The replica count the service is set to.
    pub fn replicas(&self, snapshot: &Snapshot) -> u32 {
        self.instances(snapshot)
            .next()
            .map_or(1, |row| row.replicas)
    }
}

/// The service a snapshot row belongs to; rows from a supervisor that predates
/// replicas carry no `service` and are their own service.
pub fn service_of(row: &ServiceSnapshot) -> &str {
    if row.service.is_empty() {
        &row.name
    } else {
        &row.service
    }
}

/// The table for `snapshot`: services in snapshot order, a replicated one as a group
/// (followed by its replicas if it is in `expanded`), inactive services only with
/// `show_inactive`.
pub fn build(
    snapshot: &Snapshot,
    expanded: &HashSet<String>,
    show_inactive: bool,
) -> Vec<TableRow> {
    let mut services: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (index, row) in snapshot.services.iter().enumerate() {
        if row.inactive && !show_inactive {
            continue;
        }
        let service = service_of(row);
        match position.get(service) {
            Some(at) => services[*at].1.push(index),
            None => {
                position.insert(service, services.len());
                services.push((service, vec![index]));
            }
        }
    }
    let mut rows = Vec::with_capacity(snapshot.services.len());
    for (service, members) in services {
        let replicated = members
            .iter()
            .any(|index| snapshot.services[*index].replica.is_some());
        if !replicated {
            // One row each; a service has one unless an older supervisor sent more.
            rows.extend(members.into_iter().map(|index| TableRow {
                kind: RowKind::Single,
                service: service.to_owned(),
                members: vec![index],
            }));
            continue;
        }
        let open = expanded.contains(service);
        rows.push(TableRow {
            kind: RowKind::Group { expanded: open },
            service: service.to_owned(),
            members: members.clone(),
        });
        if open {
            rows.extend(members.into_iter().map(|index| TableRow {
                kind: RowKind::Replica,
                service: service.to_owned(),
                members: vec![index],
            }));
        }
    }
    rows
}

/// Replicas of a group counted by state, for its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Replicas serving: healthy or running.
    pub ready: usize,
    /// The count the service is set to.
    pub replicas: u32,
    /// `healthy` when the service has a probe, else `running`.
    pub ready_word: &'static str,
    /// The other replicas by state, most urgent first.
    pub others: Vec<(ServiceState, usize)>,
    /// The most urgent state among the replicas: the group's symbol and colour.
    pub worst: ServiceState,
}

/// How urgent a state is to look at; higher first.
fn urgency(state: ServiceState) -> u8 {
    match state {
        ServiceState::Failed => 9,
        ServiceState::Unknown => 8,
        ServiceState::Unhealthy => 8,
        ServiceState::Backoff => 7,
        ServiceState::Building => 6,
        ServiceState::Starting => 5,
        ServiceState::Waiting => 4,
        ServiceState::Stopping => 3,
        ServiceState::Stopped => 2,
        ServiceState::Completed => 1,
        ServiceState::Healthy | ServiceState::Running => 0,
    }
}

pub fn summarize<'a>(
    replicas: u32,
    instances: impl IntoIterator<Item = &'a ServiceSnapshot>,
) -> Summary {
    let mut ready = 0;
    let mut probed = false;
    let mut worst = ServiceState::Healthy;
    let mut others: Vec<(ServiceState, usize)> = Vec::new();
    let mut any = false;
    for row in instances {
        let state = row.status.state;
        probed |= row.status.health.is_some() || state == ServiceState::Healthy;
        if !any || urgency(state) > urgency(worst) {
            worst = state;
        }
        any = true;
        if matches!(state, ServiceState::Healthy | ServiceState::Running) {
            ready += 1;
        } else {
            match others.iter_mut().find(|(other, _)| *other == state) {
                Some((_, count)) => *count += 1,
                None => others.push((state, 1)),
            }
        }
    }
    others.sort_by_key(|(state, _)| std::cmp::Reverse(urgency(*state)));
    if !any {
        worst = ServiceState::Stopped;
    }
    Summary {
        ready,
        replicas,
        ready_word: if probed { "healthy" } else { "running" },
        others,
        worst,
    }
}

impl Summary {
    /// `3/3 healthy`, `2/3 healthy · 1 starting`, `0 replicas · 2 stopping`.
    pub fn text(&self) -> String {
        let mut text = if self.replicas == 0 {
            "0 replicas".to_owned()
        } else {
            format!("{}/{} {}", self.ready, self.replicas, self.ready_word)
        };
        for (state, count) in &self.others {
            if self.replicas == 0 && *state == ServiceState::Stopped {
                continue;
            }
            text.push_str(&format!(" · {count} {state}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Generation, HealthStatus, InstanceStatus, ServiceKindName};

    fn row(service: &str, replica: Option<u32>, replicas: u32) -> ServiceSnapshot {
        ServiceSnapshot {
            name: replica.map_or(service.to_owned(), |n| format!("{service}.{n}")),
            kind: ServiceKindName::Process,
            status: InstanceStatus::stopped(Vec::new()),
            last_event: None,
            last_event_at_ms: None,
            waiting_for: None,
            service: service.into(),
            replica,
            replicas,
            profiles: Vec::new(),
            inactive: false,
        }
    }

    fn snapshot(services: Vec<ServiceSnapshot>) -> Snapshot {
        Snapshot {
            services,
            ..Snapshot::default()
        }
    }

    fn names(rows: &[TableRow], snapshot: &Snapshot) -> Vec<String> {
        rows.iter()
            .map(|row| match row.kind {
                RowKind::Group { expanded: true } => format!("{}/", row.target(snapshot)),
                RowKind::Group { expanded: false } => format!("{}+", row.target(snapshot)),
                RowKind::Replica => format!("  {}", row.target(snapshot)),
                RowKind::Single => row.target(snapshot).to_owned(),
            })
            .collect()
    }

    #[test]
    fn replicas_fold_into_one_row_that_expands_and_inactive_services_hide() {
        let mut debug = row("debugger", None, 1);
        debug.inactive = true;
        let snapshot = snapshot(vec![
            row("db", None, 1),
            row("web", Some(1), 3),
            row("web", Some(2), 3),
            row("web", Some(3), 3),
            debug,
            row("idle", None, 0),
        ]);
        let collapsed = build(&snapshot, &HashSet::new(), false);
        assert_eq!(names(&collapsed, &snapshot), ["db", "web+", "idle"]);
        assert_eq!(collapsed[1].members, [1, 2, 3]);
        let open: HashSet<String> = ["web".to_owned()].into();
        let expanded = build(&snapshot, &open, true);
        assert_eq!(
            names(&expanded, &snapshot),
            ["db", "web/", "  web.1", "  web.2", "  web.3", "debugger", "idle"]
        );
        assert_eq!(expanded[1].target(&snapshot), "web", "a group acts on all");
        assert_eq!(expanded[3].target(&snapshot), "web.2");
        assert_eq!(expanded[6].replicas(&snapshot), 0);
    }

    #[test]
    fn a_summary_counts_serving_replicas_against_the_count_and_names_the_rest() {
        let mut rows: Vec<ServiceSnapshot> = (1..=3).map(|n| row("web", Some(n), 3)).collect();
        for row in &mut rows {
            row.status.state = ServiceState::Healthy;
            row.status.health = Some(HealthStatus::Healthy);
        }
        assert_eq!(summarize(3, &rows).text(), "3/3 healthy");
        assert_eq!(summarize(3, &rows).worst, ServiceState::Healthy);
        rows[2].status.state = ServiceState::Starting;
        assert_eq!(summarize(3, &rows).text(), "2/3 healthy · 1 starting");
        rows[0].status.state = ServiceState::Failed;
        let summary = summarize(3, &rows);
        assert_eq!(summary.text(), "1/3 healthy · 1 failed · 1 starting");
        assert_eq!(summary.worst, ServiceState::Failed);
        // Scaling 3 -> 1: the two leaving replicas stop.
        let mut leaving: Vec<ServiceSnapshot> = (1..=3).map(|n| row("web", Some(n), 1)).collect();
        leaving[0].status.state = ServiceState::Running;
        leaving[1].status.state = ServiceState::Stopping;
        leaving[2].status.state = ServiceState::Stopping;
        assert_eq!(summarize(1, &leaving).text(), "1/1 running · 2 stopping");
        leaving[0].status.state = ServiceState::Stopped;
        assert_eq!(summarize(0, &leaving).text(), "0 replicas · 2 stopping");
        let mut generation = row("web", Some(1), 3);
        generation.status.generation = Generation(2);
        assert_eq!(
            summarize(3, [&generation]).text(),
            "0/3 running · 1 stopped"
        );
    }
}
