//! The replicas' half of [`TuiState`]: the table's rows (a replicated service folded
//! into one row that opens to its replicas), keeping the selection on the same row
//! when they change, the merged log window of each replicated service, and `+`/`-`
//! scaling with the scales still on their way. The rows themselves are built by
//! [`crate::tui::rows`].

use std::sync::Arc;

use super::{describe, Shown, Status, TuiState};
use crate::event::Command;
use crate::manifest::MAX_REPLICAS;
use crate::tui::log_view::LogView;
use crate::tui::rows::{self, RowKind};

/// A `scale` sent and not yet seen in a snapshot: further `+`/`-` count from the
/// newest one's target, so pressing `+` twice quickly asks for two more, not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingScale {
    target: u32,
    /// The command's footer label, to match its outcome.
    label: String,
    /// The supervisor took it: the next snapshot shows its effect.
    acknowledged: bool,
}

/// The selected row, by what it is rather than where: found again after the table
/// is rebuilt.
#[derive(Debug, Clone)]
pub(super) struct Selection {
    service: String,
    target: String,
    group: bool,
}

impl TuiState {
    /// The selected row, by what it is.
    pub(super) fn selection(&self) -> Option<Selection> {
        let row = self.selected_row()?;
        Some(Selection {
            service: row.service.clone(),
            target: row.target(&self.snapshot).to_owned(),
            group: row.is_group(),
        })
    }

    /// Builds the table again and selects the row that was selected: the same row,
    /// else its service's (a replica scaled away, a service that became a group),
    /// else the row at the same place. Asks for the new log window if the log pane
    /// now shows another one than `shown`.
    pub(super) fn rebuild_rows(&mut self, selection: Option<Selection>, shown: Option<Shown>) {
        self.rows = rows::build(&self.snapshot, &self.expanded, self.show_inactive);
        if let Some(selection) = selection {
            let snapshot = &self.snapshot;
            let same = self.rows.iter().position(|row| {
                row.is_group() == selection.group && row.target(snapshot) == selection.target
            });
            let service = || {
                self.rows.iter().position(|row| {
                    row.service == selection.service && row.kind != RowKind::Replica
                })
            };
            if let Some(index) = same.or_else(service) {
                self.selected = index;
            }
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        if self.shown() != shown && !self.show_all {
            self.view_changed();
        }
        self.keep_selection_visible();
    }

    /// A merged window for every replicated service, made from what its replicas'
    /// windows hold when the service first shows as replicated; gone when it no
    /// longer is.
    pub(super) fn update_groups(&mut self) {
        let mut replicated: Vec<(String, Vec<Arc<str>>)> = Vec::new();
        for (row, key) in self.snapshot.services.iter().zip(&self.log_keys) {
            if row.replica.is_none() {
                continue;
            }
            let service = rows::service_of(row);
            match replicated.iter_mut().find(|(name, _)| name == service) {
                Some((_, keys)) => keys.push(key.clone()),
                None => replicated.push((service.to_owned(), vec![key.clone()])),
            }
        }
        self.groups
            .retain(|service, _| replicated.iter().any(|(name, _)| name == service));
        let cap = self.log_window;
        for (service, keys) in replicated {
            if self.groups.contains_key(&service) {
                continue;
            }
            let mut merged = LogView::new(false);
            for key in keys {
                if let Some(view) = self.views.get(&key) {
                    merged.merge(view.lines_in_order().cloned().collect(), cap, &self.queries);
                }
            }
            self.groups.insert(service, merged);
        }
    }

    /// `+` and `-`: the selected row's service (a replica's too) gets `delta` more
    /// replicas, counted from a scale still on its way if there is one, within 0 to
    /// [`MAX_REPLICAS`].
    pub(super) fn scale_selected(&mut self, delta: i64) {
        let Some(row) = self.selected_row() else {
            return;
        };
        let service = row.service.clone();
        let current = self
            .pending_scale
            .get(&service)
            .and_then(|pending| pending.last())
            .map_or_else(|| row.replicas(&self.snapshot), |pending| pending.target);
        let target = (i64::from(current) + delta).clamp(0, i64::from(MAX_REPLICAS)) as u32;
        if target == current {
            let text = if target == 0 {
                format!("{service} runs no replicas")
            } else {
                format!("{service} has {MAX_REPLICAS} replicas, the most fleet runs")
            };
            self.status = Some(Status { text, error: false });
            return;
        }
        let command = Command::Scale {
            counts: vec![(service.clone(), target)],
        };
        self.pending_scale
            .entry(service)
            .or_default()
            .push(PendingScale {
                target,
                label: describe(&command),
                acknowledged: false,
            });
        self.send(command);
    }

    /// Expands (`Some(true)`), collapses (`Some(false)`) or toggles (`None`) the
    /// selected group; on a replica, collapsing (or toggling) folds its group and
    /// selects it.
    pub(super) fn set_expanded(&mut self, wanted: Option<bool>) {
        let Some(row) = self.selected_row() else {
            return;
        };
        let service = row.service.clone();
        let open = match (row.kind, wanted) {
            (RowKind::Single, _) | (RowKind::Replica, Some(true)) => return,
            (RowKind::Replica, _) => false,
            (RowKind::Group { expanded }, None) => !expanded,
            (RowKind::Group { .. }, Some(open)) => open,
        };
        let shown = self.shown();
        let selection = Selection {
            target: service.clone(),
            service: service.clone(),
            group: true,
        };
        if open {
            self.expanded.insert(service);
        } else {
            self.expanded.remove(&service);
        }
        self.rebuild_rows(Some(selection), shown);
    }

    /// A scale the fleet took is in this snapshot; so is one whose count shows.
    pub(super) fn forget_applied_scales(&mut self) {
        let snapshot = self.snapshot.clone();
        self.pending_scale.retain(|service, pending| {
            let now = snapshot
                .services
                .iter()
                .find(|row| rows::service_of(row) == service)
                .map(|row| row.replicas);
            pending
                .retain(|scale| !scale.acknowledged && now.is_some_and(|now| now != scale.target));
            !pending.is_empty()
        });
    }

    /// The outcome of the command labelled `label`: a scale that failed changed
    /// nothing, so counting goes on from the one before it.
    pub(super) fn scale_finished(&mut self, label: &str, done: bool) {
        self.pending_scale.retain(|_, pending| {
            pending.retain_mut(|scale| {
                if scale.label == label {
                    scale.acknowledged = true;
                }
                done || scale.label != label
            });
            !pending.is_empty()
        });
    }
}
