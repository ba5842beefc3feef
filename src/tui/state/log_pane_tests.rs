//! The log pane: scrolling and follow, search and filter, and bounded log windows with
//! scrollback and the merged view.

use std::sync::Arc;

use super::super::tests::{fleet, log_line, push, service, snapshot, view, NOW};
use super::super::*;
use crate::event::ServiceState;

#[test]
fn follow_turns_off_when_scrolling_up_and_back_on_at_the_end() {
    let mut state = fleet(TuiMode::Attach);
    push(&mut state, "api", 0..100);
    state.handle(Action::FocusLog);
    assert!(state.follow());
    state.handle(Action::Up);
    assert!(!state.follow(), "scrolling up pauses");
    state.handle(Action::Up);
    push(&mut state, "api", 100..110);
    assert!(!state.follow(), "new lines do not resume");
    state.handle(Action::Down);
    assert!(!state.follow());
    // Ten new lines arrived below: it takes reaching the end to follow again.
    for _ in 0..20 {
        state.handle(Action::Down);
    }
    assert!(state.follow(), "reaching the end follows again");
}

#[test]
fn f_toggles_follow_and_g_ends_with_following() {
    let mut state = fleet(TuiMode::Attach);
    push(&mut state, "api", 0..100);
    state.handle(Action::ToggleFollow);
    assert!(!state.follow());
    state.handle(Action::FocusLog);
    state.handle(Action::Bottom);
    assert!(state.follow());
}

#[test]
fn search_n_and_shift_n_cycle_through_matches() {
    let mut state = fleet(TuiMode::Attach);
    push(&mut state, "api", 0..100);
    state.handle(Action::StartSearch);
    for c in "line 5".chars() {
        state.handle(Action::InputChar(c));
    }
    state.handle(Action::InputSubmit);
    // "line 5" and "line 50".."line 59": 11 matches, Enter goes to the newest.
    let hits: Vec<i64> = view(&state).search_hits().iter().copied().collect();
    assert_eq!(hits.len(), 11);
    assert_eq!(view(&state).current_match(), hits.last().copied());
    assert!(!state.follow());
    state.handle(Action::NextMatch);
    assert_eq!(
        view(&state).current_match(),
        hits.first().copied(),
        "n wraps"
    );
    state.handle(Action::NextMatch);
    assert_eq!(view(&state).current_match(), Some(hits[1]));
    state.handle(Action::PrevMatch);
    state.handle(Action::PrevMatch);
    assert_eq!(
        view(&state).current_match(),
        hits.last().copied(),
        "N wraps"
    );
    state.handle(Action::Back);
    assert!(!state.searching(), "Esc clears the search");
}

#[test]
fn a_cancelled_search_restores_the_previous_query() {
    let mut state = fleet(TuiMode::Attach);
    push(&mut state, "api", 0..10);
    state.handle(Action::StartSearch);
    state.handle(Action::InputChar('7'));
    state.handle(Action::InputSubmit);
    state.handle(Action::StartSearch);
    state.handle(Action::InputChar('x'));
    assert_eq!(state.search_query(), "x", "search is incremental");
    state.handle(Action::InputCancel);
    assert_eq!(state.search_query(), "7");
    assert_eq!(state.mode(), Mode::Normal);
}

#[test]
fn a_filter_shows_only_matching_lines_and_keeps_up_with_new_ones() {
    let mut state = fleet(TuiMode::Attach);
    push(&mut state, "api", 0..100);
    state.handle(Action::StartFilter);
    for c in "line 9".chars() {
        state.handle(Action::InputChar(c));
    }
    state.handle(Action::InputSubmit);
    assert_eq!(view(&state).display_len(true), 11);
    push(&mut state, "api", 100..1000);
    // 9, 90..99, 900..999.
    assert_eq!(view(&state).display_len(true), 111);
    state.handle(Action::Back);
    assert!(!state.filtering());
    assert_eq!(view(&state).display_len(false), 1000);
}

#[test]
fn a_million_lines_keep_memory_bounded() {
    let mut state = fleet(TuiMode::Attach);
    let mut n = 0;
    while n < 1_000_000 {
        push(&mut state, "api", n..n + 10_000);
        n += 10_000;
    }
    assert_eq!(view(&state).len(), LOG_WINDOW);
    assert_eq!(state.all.len(), LOG_WINDOW);
    let last = view(&state).display_seq(false, LOG_WINDOW - 1);
    let line = last.and_then(|seq| view(&state).line(seq));
    assert_eq!(line.map(|line| &*line.text), Some("line 999999"));
}

#[test]
fn a_paused_window_keeps_its_lines_and_detaches_when_full() {
    let mut state = fleet(TuiMode::Attach).with_log_window(100);
    push(&mut state, "api", 0..100);
    state.handle(Action::FocusLog);
    state.handle(Action::Up);
    let geometry = state.log_geometry();
    let top = view(&state).top_index(false, &geometry);
    push(&mut state, "api", 100..150);
    assert_eq!(view(&state).len(), 100);
    assert!(view(&state).is_detached());
    assert_eq!(
        view(&state).top_index(false, &geometry),
        top,
        "the page stays put"
    );
    // Back to the live end: the loop is asked for the tail of the file.
    let requests = state.handle(Action::Bottom);
    assert!(matches!(requests.as_slice(), [Request::LoadTail { .. }]));
}

#[test]
fn scrolling_to_the_oldest_line_asks_for_older_lines_once() {
    let mut state = TuiState::new(TuiMode::Attach, true).with_log_window(1_000);
    state.apply_snapshot(snapshot(vec![service("api", ServiceState::Healthy)]), NOW);
    let initial = state.drain_requests();
    assert!(matches!(
        initial.as_slice(),
        [Request::LoadOlder {
            count: INITIAL_TAIL,
            front: None,
            ..
        }]
    ));
    let key: Arc<str> = Arc::from("api");
    let loaded: Vec<Arc<Line>> = (0..500)
        .map(|n| Arc::new(Line::from_log(&key, log_line(10_000 + n))))
        .collect();
    state.prepend_log_lines("api", loaded, false);
    state.handle(Action::FocusLog);
    let requests = state.handle(Action::Top);
    let Some(Request::LoadOlder {
        before_line_count,
        front: Some(front),
        ..
    }) = requests.first()
    else {
        panic!("expected a LoadOlder request, got {requests:?}");
    };
    assert_eq!(*before_line_count, 500);
    assert_eq!(&*front.text, "line 10000");
    assert!(state.handle(Action::Up).is_empty(), "one request at a time");
    // The answer overlaps memory by one line; the overlap is cut.
    let older: Vec<Arc<Line>> = (9_000..10_001)
        .map(|n| Arc::new(Line::from_log(&key, log_line(n))))
        .collect();
    state.prepend_log_lines("api", older, false);
    assert_eq!(view(&state).len(), 1_000);
    assert!(view(&state).is_detached(), "the newest lines made room");
    let text_at = |index: usize| {
        let view = view(&state);
        let seq = view.display_seq(false, index)?;
        view.line(seq).map(|line| line.text.to_string())
    };
    assert_eq!(text_at(0).as_deref(), Some("line 9000"));
    assert_eq!(text_at(999).as_deref(), Some("line 9999"));
}

#[test]
fn the_merged_view_gets_each_services_first_chunk_in_time_order() {
    let mut state = TuiState::new(TuiMode::Attach, true);
    state.apply_snapshot(
        snapshot(vec![
            service("api", ServiceState::Healthy),
            service("db", ServiceState::Healthy),
        ]),
        NOW,
    );
    state.drain_requests();
    let api: Arc<str> = Arc::from("api");
    let db: Arc<str> = Arc::from("db");
    let even = (0..10)
        .step_by(2)
        .map(|n| Arc::new(Line::from_log(&api, log_line(n))));
    let odd = (1..10)
        .step_by(2)
        .map(|n| Arc::new(Line::from_log(&db, log_line(n))));
    state.prepend_log_lines("api", even.collect(), true);
    state.prepend_log_lines("db", odd.collect(), true);
    state.handle(Action::ToggleAll);
    let view = view(&state);
    let texts: Vec<String> = (0..view.len())
        .filter_map(|i| view.display_seq(false, i))
        .filter_map(|seq| view.line(seq))
        .map(|line| line.text.to_string())
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("line {n}")).collect();
    assert_eq!(texts, expected);
}

// ----- replicas ---------------------------------------------------------------------

use super::super::tests::{answer_loads, replicated, replicated_snapshot};

/// The texts of the window on screen, with the label each line gets in a merged view.
fn labelled(state: &TuiState) -> Vec<String> {
    let view = view(state);
    (0..view.len())
        .filter_map(|i| view.display_seq(false, i))
        .filter_map(|seq| view.line(seq))
        .map(|line| format!("{} {}", state.line_label(&line.service).0, line.text))
        .collect()
}

#[test]
fn replica_one_reads_the_services_own_log_file_and_the_others_their_numbered_ones() {
    let mut state = TuiState::new(TuiMode::Attach, true);
    state.apply_snapshot(replicated_snapshot(3), NOW);
    let mut asked = Vec::new();
    for request in state.drain_requests() {
        if let Request::LoadOlder { service, .. } = request {
            // Each file has more than the first read took.
            state.prepend_log_lines(&service, Vec::new(), false);
            asked.push(service.to_string());
        }
    }
    asked.sort();
    assert_eq!(asked, ["api", "db", "web", "web.2", "web.3"]);
    // Lines arrive under the file's name; replica 1's go to the `web.1` row.
    push(&mut state, "web", 0..2);
    state.handle(Action::Down);
    state.handle(Action::Expand);
    state.handle(Action::Down);
    assert_eq!(state.selected_service(), Some("web.1"));
    assert_eq!(view(&state).len(), 2);
    assert_eq!(state.shown_title(), "web.1");
    // Scrolling up in a replica's window reads back its own file.
    state.handle(Action::FocusLog);
    let requests = state.handle(Action::Top);
    assert!(
        matches!(requests.as_slice(), [Request::LoadOlder { service, .. }] if &**service == "web"),
        "{requests:?}"
    );
}

#[test]
fn a_group_shows_its_replicas_logs_merged_in_time_order_each_line_labelled() {
    let mut state = TuiState::new(TuiMode::Attach, true);
    state.apply_snapshot(replicated_snapshot(3), NOW);
    let key: Arc<str> = Arc::from("web.2");
    for request in state.drain_requests() {
        if let Request::LoadOlder { service, .. } = request {
            // Replica 2's history, read from its file, lands in the group's window too.
            let history: Vec<Arc<Line>> = if *service == *key {
                (0..2)
                    .map(|n| Arc::new(Line::from_log(&key, log_line(n))))
                    .collect()
            } else {
                Vec::new()
            };
            state.prepend_log_lines(&service, history, true);
        }
    }
    push(&mut state, "web", 2..3);
    push(&mut state, "web.3", 3..4);
    push(&mut state, "api", 4..5);
    state.handle(Action::Down);
    assert_eq!(state.shown_title(), "web · all replicas");
    assert_eq!(
        labelled(&state),
        [
            "web.2 line 0",
            "web.2 line 1",
            "web.1 line 2",
            "web.3 line 3"
        ]
    );
    assert_eq!(state.prefix_name_width(), Some(5));
    // A group's window has no file behind it: scrolling up reads nothing.
    state.handle(Action::FocusLog);
    assert!(state.handle(Action::Top).is_empty());
    // A new replica's lines join the group.
    state.apply_snapshot(replicated_snapshot(4), NOW);
    answer_loads(&mut state);
    push(&mut state, "web.4", 5..6);
    assert_eq!(
        labelled(&state).last().map(String::as_str),
        Some("web.4 line 5")
    );
    // Back to one replica: the service's own file again, no prefix.
    state.apply_snapshot(replicated_snapshot(1), NOW);
    assert_eq!(state.shown_title(), "web");
    assert_eq!(state.prefix_name_width(), None);
    assert_eq!(labelled(&state), ["web line 2"]);
}

#[test]
fn a_group_made_from_a_single_service_starts_with_what_its_window_held() {
    let mut state = replicated(1);
    push(&mut state, "web", 0..3);
    state.apply_snapshot(replicated_snapshot(2), NOW);
    answer_loads(&mut state);
    push(&mut state, "web.2", 3..4);
    state.handle(Action::Down);
    assert_eq!(
        labelled(&state),
        [
            "web.1 line 0",
            "web.1 line 1",
            "web.1 line 2",
            "web.2 line 3"
        ]
    );
}
