//! The one table of keys: dispatch, the footer hints and the `?` overlay
//! are all generated from it, so they cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the user means, whatever key said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Rescan,
    StartFilter,
    CycleSort,
    ReverseSort,
    ToggleHelp,
}

/// Where a key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everywhere,
    Dashboard,
    Detail,
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [KeyCode],
    /// How the keys are written in help and footer.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    /// Shown in the footer, not only in the help overlay.
    pub footer: bool,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Char('?')],
        label: "?",
        action: Action::ToggleHelp,
        help: "show or hide this help",
        footer: true,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Char('q')],
        label: "q",
        action: Action::Quit,
        help: "quit (Ctrl-C too)",
        footer: true,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Up, KeyCode::Char('k')],
        label: "↑/k",
        action: Action::Up,
        help: "move up",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Down, KeyCode::Char('j')],
        label: "↓/j",
        action: Action::Down,
        help: "move down",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::PageUp],
        label: "PgUp",
        action: Action::PageUp,
        help: "one page up",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::PageDown],
        label: "PgDn",
        action: Action::PageDown,
        help: "one page down",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Home, KeyCode::Char('g')],
        label: "Home/g",
        action: Action::Top,
        help: "first line",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::End, KeyCode::Char('G')],
        label: "End/G",
        action: Action::Bottom,
        help: "last line",
        footer: false,
    },
    Binding {
        scope: Scope::Everywhere,
        keys: &[KeyCode::Char('r')],
        label: "r",
        action: Action::Rescan,
        help: "rescan the backup root",
        footer: true,
    },
    Binding {
        scope: Scope::Dashboard,
        keys: &[KeyCode::Enter],
        label: "Enter",
        action: Action::Open,
        help: "open the selected client",
        footer: true,
    },
    Binding {
        scope: Scope::Dashboard,
        keys: &[KeyCode::Char('/')],
        label: "/",
        action: Action::StartFilter,
        help: "filter clients by name, status or problem code",
        footer: true,
    },
    Binding {
        scope: Scope::Dashboard,
        keys: &[KeyCode::Char('s')],
        label: "s",
        action: Action::CycleSort,
        help: "sort by the next column",
        footer: true,
    },
    Binding {
        scope: Scope::Dashboard,
        keys: &[KeyCode::Char('S')],
        label: "S",
        action: Action::ReverseSort,
        help: "reverse the sort order",
        footer: false,
    },
    Binding {
        scope: Scope::Dashboard,
        keys: &[KeyCode::Esc],
        label: "Esc",
        action: Action::Back,
        help: "clear the filter",
        footer: false,
    },
    Binding {
        scope: Scope::Detail,
        keys: &[
            KeyCode::Esc,
            KeyCode::Backspace,
            KeyCode::Left,
            KeyCode::Char('h'),
        ],
        label: "Esc",
        action: Action::Back,
        help: "back to the dashboard",
        footer: true,
    },
];

/// The action bound to this key in this scope, if any.
pub fn action_for(scope: Scope, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    BINDINGS
        .iter()
        .filter(|b| b.scope == scope || b.scope == Scope::Everywhere)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.action)
}

/// The footer's hints for a scope, generated from the table.
pub fn footer_hints(scope: Scope) -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| b.footer && (b.scope == scope || b.scope == Scope::Everywhere))
        .map(|b| (b.label, short_help(b.help)))
        .collect()
}

fn short_help(help: &'static str) -> &'static str {
    match help.split_once(' ') {
        Some((first, _)) if first == "show" => "help",
        Some(("open", _)) => "open",
        Some(("filter", _)) => "filter",
        Some(("sort", _)) => "sort",
        Some(("rescan", _)) => "rescan",
        Some(("quit", _)) => "quit",
        Some(("back", _)) => "back",
        _ => help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for scope in [Scope::Dashboard, Scope::Detail] {
            let mut seen = Vec::new();
            for binding in BINDINGS
                .iter()
                .filter(|b| b.scope == scope || b.scope == Scope::Everywhere)
            {
                for key in binding.keys {
                    assert!(!seen.contains(key), "{key:?} bound twice in {scope:?}");
                    seen.push(*key);
                }
            }
        }
    }

    #[test]
    fn ctrl_c_quits_everywhere() {
        let key = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Scope::Detail, key), Some(Action::Quit));
        assert_eq!(
            action_for(Scope::Dashboard, KeyEvent::from(KeyCode::Enter)),
            Some(Action::Open)
        );
        assert_eq!(
            action_for(Scope::Detail, KeyEvent::from(KeyCode::Enter)),
            None
        );
    }
}
