//! Where each part of the screen goes, for a given terminal size.
//!
//! Shared by the pure draw ([`super::view`]) and the pure update ([`super::state`]): the
//! state needs the same rectangles to page by a screenful, to know when the end of the
//! log is in view (follow turns back on) and to turn a mouse click into a row.

use ratatui::layout::Rect;

/// The log pane never gets fewer text rows than this while there is room.
const MIN_LOG_ROWS: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Project name and totals; empty in copy mode.
    pub header: Rect,
    /// Column titles in the first row, one service per row below.
    pub table: Rect,
    /// The log pane's title bar; empty in copy mode.
    pub log_title: Rect,
    pub log_body: Rect,
    /// Key hints, input prompt or the last command's outcome.
    pub footer: Rect,
}

pub fn areas(area: Rect, services: usize, copy_mode: bool) -> Areas {
    let row = |y: u16, height: u16| Rect::new(area.x, y, area.width, height);
    let empty = Rect::new(area.x, area.y, 0, 0);
    if area.height == 0 {
        return Areas {
            header: empty,
            table: empty,
            log_title: empty,
            log_body: empty,
            footer: empty,
        };
    }
    let bottom = area.y + area.height;
    if copy_mode {
        return Areas {
            header: empty,
            table: empty,
            log_title: empty,
            log_body: row(area.y, area.height - 1),
            footer: row(bottom - 1, 1),
        };
    }
    let middle = area.height.saturating_sub(2);
    let wanted_table = (services.max(1) as u16).saturating_add(1);
    let table_cap = if middle >= 2 * MIN_LOG_ROWS + 2 {
        (middle * 2 / 5).max(3).min(middle - MIN_LOG_ROWS - 1)
    } else {
        middle / 2
    };
    let table_height = wanted_table.min(table_cap);
    let log_height = middle - table_height;
    let table_y = area.y + 1.min(area.height);
    let log_y = table_y + table_height;
    Areas {
        header: row(area.y, 1.min(area.height)),
        table: row(table_y, table_height),
        log_title: row(log_y, 1.min(log_height)),
        log_body: row(log_y + 1.min(log_height), log_height.saturating_sub(1)),
        footer: row(bottom - 1, if area.height >= 2 { 1 } else { 0 }),
    }
}

/// Service rows that fit under the column titles.
pub fn table_rows(areas: &Areas) -> usize {
    areas.table.height.saturating_sub(1) as usize
}

pub fn contains(rect: Rect, column: u16, row: u16) -> bool {
    column >= rect.x && column < rect.x + rect.width && row >= rect.y && row < rect.y + rect.height
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_used_exactly_once() {
        for height in 4..60 {
            for services in [0, 1, 5, 300] {
                let areas = areas(Rect::new(0, 0, 80, height), services, false);
                let used = areas.header.height
                    + areas.table.height
                    + areas.log_title.height
                    + areas.log_body.height
                    + areas.footer.height;
                assert_eq!(used, height, "height {height}, {services} services");
                assert_eq!(areas.footer.y, height - 1);
            }
        }
    }

    #[test]
    fn a_small_fleet_takes_only_the_rows_it_needs() {
        let areas = areas(Rect::new(0, 0, 100, 40), 5, false);
        assert_eq!(areas.table.height, 6);
        assert_eq!(areas.log_body.height, 40 - 2 - 6 - 1);
    }
}
