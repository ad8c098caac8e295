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
    Verify,
    EndVerification,
    Restore,
    ReadTarget,
    NewClient,
    DeepCheck,
    Drill,
}

/// Where a key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everywhere,
    Dashboard,
    Detail,
    Verify,
    Restore,
    NewClient,
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [KeyCode],
    /// How the keys are written in help and footer.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    /// The footer's word for it; empty when it only shows in the help overlay.
    pub hint: &'static str,
}

const fn bind(
    scope: Scope,
    keys: &'static [KeyCode],
    label: &'static str,
    action: Action,
    help: &'static str,
    hint: &'static str,
) -> Binding {
    Binding {
        scope,
        keys,
        label,
        action,
        help,
        hint,
    }
}

use KeyCode::{Backspace, Char, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Up};
use Scope::{Dashboard, Detail, Everywhere, NewClient, Restore, Verify};

#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    bind(Everywhere, &[Char('?')], "?", Action::ToggleHelp, "show or hide this help", "help"),
    bind(Everywhere, &[Char('q')], "q", Action::Quit, "quit (Ctrl-C too)", "quit"),
    bind(Everywhere, &[Up, Char('k')], "↑/k", Action::Up, "move up (scroll in the detail)", ""),
    bind(Everywhere, &[Down, Char('j')], "↓/j", Action::Down, "move down (scroll in the detail)", ""),
    bind(Everywhere, &[PageUp], "PgUp", Action::PageUp, "one page up", ""),
    bind(Everywhere, &[PageDown], "PgDn", Action::PageDown, "one page down", ""),
    bind(Everywhere, &[Home, Char('g')], "Home/g", Action::Top, "first line", ""),
    bind(Everywhere, &[End, Char('G')], "End/G", Action::Bottom, "last line", ""),
    bind(Everywhere, &[Char('r')], "r", Action::Rescan, "rescan the backup root", "rescan"),
    bind(Dashboard, &[Enter], "Enter", Action::Open, "open the selected client", "open"),
    bind(Dashboard, &[Char('/')], "/", Action::StartFilter, "filter: name, status, problem", "filter"),
    bind(Dashboard, &[Char('s')], "s", Action::CycleSort, "sort by the next column", "sort"),
    bind(Dashboard, &[Char('S')], "S", Action::ReverseSort, "reverse the sort order", ""),
    bind(Dashboard, &[Char('v')], "v", Action::Verify, "verify archiving (3-5 min)", "verify"),
    bind(Dashboard, &[Char('R')], "R", Action::Restore, "restore wizard, dry run first", "restore"),
    bind(Dashboard, &[Char('d')], "d", Action::DeepCheck, "deep check every file", "deep"),
    bind(Dashboard, &[Char('D')], "D", Action::Drill, "restore drill (scratch dir)", "drill"),
    bind(Dashboard, &[Char('N')], "N", Action::NewClient, "new client (setup)", "new"),
    bind(Dashboard, &[Esc], "Esc", Action::Back, "clear the filter", ""),
    bind(Detail, &[Esc, Backspace, Left, Char('h')], "Esc/⌫/←/h", Action::Back, "back to the dashboard", "back"),
    bind(Detail, &[Char('v')], "v", Action::Verify, "verify archiving", "verify"),
    bind(Detail, &[Char('d')], "d", Action::DeepCheck, "deep check", "deep"),
    bind(Detail, &[Char('D')], "D", Action::Drill, "restore drill", "drill"),
    bind(Detail, &[Char('t')], "t", Action::ReadTarget, "read the target server (SSH)", "target"),
    bind(Verify, &[Esc], "Esc", Action::EndVerification, "end now; press again to leave", "end/leave"),
    bind(Restore, &[Esc], "Esc", Action::Back, "leave; at a question: no", "cancel/back"),
    bind(NewClient, &[Esc], "Esc", Action::Back, "leave; at the plan: back to the form", "back"),
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
        .filter(|b| !b.hint.is_empty() && (b.scope == scope || b.scope == Scope::Everywhere))
        .map(|b| (b.label, b.hint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for scope in [
            Scope::Dashboard,
            Scope::Detail,
            Scope::Verify,
            Scope::Restore,
            Scope::NewClient,
        ] {
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
