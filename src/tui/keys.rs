//! Keys and mouse to [`Action`]s, given what keys mean right now ([`Mode`]).
//!
//! Pure and stateless; the only place that knows which key does what. [`HELP`] is the
//! list the help overlay shows and the README repeats, so keep the two in step with
//! [`map_key`].

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use super::state::{Action, Mode};

/// Lines one notch of the mouse wheel scrolls a log.
const WHEEL_LINES: i32 = 3;

/// Every key, as `(keys, what they do)`.
pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓ / k j", "select service / scroll log"),
    ("PgUp PgDn", "page up / down"),
    ("g G / Home End", "first / last (G follows)"),
    ("Tab", "switch pane"),
    ("Enter", "focus the log"),
    ("Esc", "clear search, filter; back"),
    ("Space → ← / l h", "open / fold a service's replicas"),
    ("r", "restart service or replica"),
    ("d", "redeploy (rebuild) service"),
    ("s", "stop / start service"),
    ("+ -", "scale: one replica more / fewer"),
    ("i", "show inactive (profile) services"),
    ("a", "all services' logs"),
    ("/ n N", "search the log; next / previous"),
    ("&", "filter: only matching lines"),
    ("f w t", "follow / wrap / timestamps (UTC)"),
    ("c", "copy mode: plain text"),
    ("?", "this help"),
    ("q", "quit"),
    ("Ctrl-C", "up: stop fleet; tui: quit"),
    ("wheel, click", "scroll, select, focus"),
];

pub fn map_key(key: KeyEvent, mode: Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Interrupt);
    }
    match mode {
        Mode::ConfirmQuit => match key.code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => Some(Action::ConfirmYes),
            KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Some(Action::ConfirmNo),
            _ => None,
        },
        // Any key closes the help; it should never trap anyone.
        Mode::Help => Some(Action::ToggleHelp),
        Mode::Input(_) => match key.code {
            KeyCode::Enter => Some(Action::InputSubmit),
            KeyCode::Esc => Some(Action::InputCancel),
            KeyCode::Backspace => Some(Action::InputBackspace),
            KeyCode::Char('u') if ctrl => Some(Action::InputClear),
            KeyCode::Char(c) if !ctrl => Some(Action::InputChar(c)),
            _ => None,
        },
        Mode::Copy => match key.code {
            KeyCode::Char('c' | 'q') | KeyCode::Esc => Some(Action::ToggleCopy),
            _ => movement(key.code, ctrl),
        },
        Mode::Normal => movement(key.code, ctrl).or(match key.code {
            KeyCode::Enter => Some(Action::FocusLog),
            KeyCode::Right => Some(Action::Expand),
            KeyCode::Left => Some(Action::Collapse),
            KeyCode::Tab | KeyCode::BackTab => Some(Action::SwitchPane),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Char(c) if !ctrl => match c {
                'r' => Some(Action::Restart),
                'd' => Some(Action::Redeploy),
                's' => Some(Action::StopStart),
                // `=` is `+` without Shift on most layouts.
                '+' | '=' => Some(Action::ScaleUp),
                '-' => Some(Action::ScaleDown),
                ' ' => Some(Action::ToggleExpand),
                'l' => Some(Action::Expand),
                'h' => Some(Action::Collapse),
                'i' => Some(Action::ToggleInactive),
                'a' => Some(Action::ToggleAll),
                '/' => Some(Action::StartSearch),
                '&' => Some(Action::StartFilter),
                'n' => Some(Action::NextMatch),
                'N' => Some(Action::PrevMatch),
                'f' => Some(Action::ToggleFollow),
                'w' => Some(Action::ToggleWrap),
                't' => Some(Action::ToggleTimestamps),
                'c' => Some(Action::ToggleCopy),
                '?' => Some(Action::ToggleHelp),
                'q' => Some(Action::Quit),
                _ => None,
            },
            _ => None,
        }),
    }
}

fn movement(code: KeyCode, ctrl: bool) -> Option<Action> {
    match code {
        KeyCode::Up | KeyCode::Char('k') if !ctrl => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') if !ctrl => Some(Action::Down),
        KeyCode::PageUp => Some(Action::PageUp),
        KeyCode::PageDown => Some(Action::PageDown),
        KeyCode::Char('u' | 'b') if ctrl => Some(Action::PageUp),
        KeyCode::Char('d' | 'f') if ctrl => Some(Action::PageDown),
        KeyCode::Home | KeyCode::Char('g') if !ctrl => Some(Action::Top),
        KeyCode::End | KeyCode::Char('G') if !ctrl => Some(Action::Bottom),
        _ => None,
    }
}

pub fn map_mouse(mouse: MouseEvent, mode: Mode) -> Option<Action> {
    if !matches!(mode, Mode::Normal | Mode::Copy) {
        return None;
    }
    let (column, row) = (mouse.column, mouse.row);
    match mouse.kind {
        MouseEventKind::ScrollUp => Some(Action::Scroll {
            column,
            row,
            lines: -WHEEL_LINES,
        }),
        MouseEventKind::ScrollDown => Some(Action::Scroll {
            column,
            row,
            lines: WHEEL_LINES,
        }),
        MouseEventKind::Down(MouseButton::Left) if mode == Mode::Normal => {
            Some(Action::Click { column, row })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::InputKind;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn letters_type_into_a_search_instead_of_acting() {
        let search = Mode::Input(InputKind::Search);
        assert_eq!(
            map_key(key(KeyCode::Char('q')), search),
            Some(Action::InputChar('q'))
        );
        assert_eq!(
            map_key(key(KeyCode::Char('q')), Mode::Normal),
            Some(Action::Quit)
        );
    }

    #[test]
    fn ctrl_c_interrupts_in_every_mode() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [
            Mode::Normal,
            Mode::Help,
            Mode::Copy,
            Mode::ConfirmQuit,
            Mode::Input(InputKind::Filter),
        ] {
            assert_eq!(map_key(ctrl_c, mode), Some(Action::Interrupt), "{mode:?}");
        }
    }

    #[test]
    fn the_quit_dialog_takes_yes_enter_no_and_escape() {
        let mode = Mode::ConfirmQuit;
        assert_eq!(map_key(key(KeyCode::Enter), mode), Some(Action::ConfirmYes));
        assert_eq!(
            map_key(key(KeyCode::Char('y')), mode),
            Some(Action::ConfirmYes)
        );
        assert_eq!(map_key(key(KeyCode::Esc), mode), Some(Action::ConfirmNo));
        assert_eq!(
            map_key(key(KeyCode::Char('n')), mode),
            Some(Action::ConfirmNo)
        );
        assert_eq!(map_key(key(KeyCode::Char('r')), mode), None);
    }

    #[test]
    fn replica_keys_map_to_their_actions_and_type_into_a_search() {
        let table = [
            (KeyCode::Char('+'), Action::ScaleUp),
            (KeyCode::Char('='), Action::ScaleUp),
            (KeyCode::Char('-'), Action::ScaleDown),
            (KeyCode::Char(' '), Action::ToggleExpand),
            (KeyCode::Right, Action::Expand),
            (KeyCode::Char('l'), Action::Expand),
            (KeyCode::Left, Action::Collapse),
            (KeyCode::Char('h'), Action::Collapse),
            (KeyCode::Char('i'), Action::ToggleInactive),
            (KeyCode::Enter, Action::FocusLog),
        ];
        for (code, action) in table {
            assert_eq!(map_key(key(code), Mode::Normal), Some(action), "{code:?}");
        }
        let search = Mode::Input(InputKind::Search);
        assert_eq!(
            map_key(key(KeyCode::Char('-')), search),
            Some(Action::InputChar('-'))
        );
        assert_eq!(map_key(key(KeyCode::Char('+')), Mode::Copy), None);
    }

    #[test]
    fn every_normal_key_in_the_help_does_something() {
        for c in "rdsa/&nNfwtc?qjkgG+=- lhi".chars() {
            assert!(
                map_key(key(KeyCode::Char(c)), Mode::Normal).is_some(),
                "{c} does nothing"
            );
        }
    }
}
