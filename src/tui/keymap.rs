//! The one table of keys: dispatch, the footer hints, the `?` overlay, the
//! hints under forms and in confirmations are all generated from it, so
//! they cannot disagree.
//!
//! Screens that take text (the filter, the forms), questions waiting for a
//! yes or no, and overlays (the help, the error popup) look keys up in their
//! own scope only (`action_in`): there, `q` or `j` are letters or nothing,
//! never a command for the screen underneath. Which scope holds the keys is
//! the app's `key_scope`; the footer shows that scope's hints, so what it
//! offers is what works.

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
    /// Yes to the question asked.
    Yes,
    /// No to the question asked: nothing is changed.
    No,
    NextField,
    PreviousField,
    /// Submit the form.
    Submit,
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
    /// Typing the dashboard's filter.
    Filter,
    /// A yes/no question on the dashboard (a drill).
    Confirm,
    /// The restore wizard's form.
    RestoreForm,
    /// The restore engine waits for a yes or no before a destructive step.
    RestoreQuestion,
    /// The new-client form.
    NewClientForm,
    /// The new-client plan, waiting for a yes to apply it.
    NewClientReview,
    /// A wizard or the new-client screen has finished.
    Done,
    /// The `?` overlay is open.
    Help,
    /// The error popup is open.
    Error,
}

impl Scope {
    /// Whether the `Everywhere` keys apply here too: not where keys are
    /// text (the filter, the forms), answers (questions, finished screens),
    /// overlays, or a wizard at work (its own keys only: quitting halfway
    /// through a restore is Ctrl-C, on purpose).
    pub fn with_everywhere_keys(self) -> bool {
        matches!(self, Scope::Dashboard | Scope::Detail | Scope::Verify)
    }

    /// Every scope, for tests and generated text.
    pub const ALL: [Scope; 15] = [
        Scope::Everywhere,
        Scope::Dashboard,
        Scope::Detail,
        Scope::Verify,
        Scope::Restore,
        Scope::NewClient,
        Scope::Filter,
        Scope::Confirm,
        Scope::RestoreForm,
        Scope::RestoreQuestion,
        Scope::NewClientForm,
        Scope::NewClientReview,
        Scope::Done,
        Scope::Help,
        Scope::Error,
    ];
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

use KeyCode::{
    BackTab, Backspace, Char, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Tab, Up,
};
use Scope::{
    Confirm, Dashboard, Detail, Done, Error, Everywhere, Filter, Help, NewClient, NewClientForm,
    NewClientReview, Restore, RestoreForm, RestoreQuestion, Verify,
};

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
    bind(Filter, &[Enter], "Enter", Action::Submit, "keep the filter", "keep"),
    bind(Filter, &[Esc], "Esc", Action::Back, "clear the filter", "clear"),
    bind(Confirm, &[Char('y'), Char('Y')], "y", Action::Yes, "yes: go on", "yes"),
    bind(Confirm, &[Char('n'), Char('N'), Esc], "n/Esc", Action::No, "no: nothing is started", "no"),
    bind(RestoreForm, &[Tab, Down], "Tab/↑↓", Action::NextField, "next field", "move"),
    bind(RestoreForm, &[BackTab, Up], "⇧Tab/↑", Action::PreviousField, "previous field", ""),
    bind(RestoreForm, &[Enter], "Enter", Action::Submit, "start (a dry run unless turned off)", "start"),
    bind(RestoreForm, &[Esc], "Esc", Action::Back, "back to the dashboard", "back"),
    bind(RestoreQuestion, &[Char('y'), Char('Y')], "y", Action::Yes, "yes: run this step", "yes"),
    // Esc at a confirmation cancels safely: the engine stops before the destructive action.
    bind(RestoreQuestion, &[Char('n'), Char('N'), Esc], "n/Esc", Action::No, "no: the restore stops safely", "no (stops the restore safely)"),
    bind(NewClientForm, &[Enter], "Enter", Action::Submit, "plan: show what setup would change", "shows what setup would change (nothing changes yet)"),
    bind(NewClientForm, &[Tab, Down], "Tab", Action::NextField, "next field", "next field"),
    bind(NewClientForm, &[BackTab, Up], "⇧Tab/↑", Action::PreviousField, "previous field", ""),
    bind(NewClientForm, &[Esc], "Esc", Action::Back, "leave the new-client screen", "leave"),
    bind(NewClientReview, &[Char('y'), Char('Y')], "y", Action::Yes, "apply the plan and run the copy test", "yes"),
    bind(NewClientReview, &[Char('n'), Char('N'), Esc], "n/Esc", Action::No, "back to the form", "back to the form"),
    bind(Done, &[Enter, Esc], "Enter/Esc", Action::Back, "back to the dashboard", "back to the dashboard"),
    bind(Help, &[Char('?'), Esc], "?/Esc", Action::ToggleHelp, "close this help", "close"),
    bind(Help, &[Char('q')], "q", Action::Quit, "quit", "quit"),
    bind(Error, &[Esc, Enter], "Esc/Enter", Action::Back, "close the error", "close"),
];

/// The action bound to this key in this scope, if any.
pub fn action_for(scope: Scope, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    if !scope.with_everywhere_keys() {
        return action_in(scope, key);
    }
    BINDINGS
        .iter()
        .filter(|b| b.scope == scope || b.scope == Scope::Everywhere)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.action)
}

/// The action bound to this key in `scope` alone (no `Everywhere` keys):
/// for screens that take text and for questions.
pub fn action_in(scope: Scope, key: KeyEvent) -> Option<Action> {
    BINDINGS
        .iter()
        .filter(|b| b.scope == scope)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.action)
}

/// `scope`'s hints on one line, `key hint · key hint`: under a form, in a
/// question's popup. Generated from the table like the footer.
pub fn hint_line(scope: Scope) -> String {
    BINDINGS
        .iter()
        .filter(|b| b.scope == scope && !b.hint.is_empty())
        .map(|b| format!("{} {}", b.label, b.hint))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The footer's hints for a scope, generated from the table: the keys that
/// work there, `Everywhere`'s only where they apply.
pub fn footer_hints(scope: Scope) -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| {
            !b.hint.is_empty()
                && (b.scope == scope
                    || (b.scope == Scope::Everywhere && scope.with_everywhere_keys()))
        })
        .map(|b| (b.label, b.hint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for scope in Scope::ALL {
            let mut seen = Vec::new();
            for binding in BINDINGS.iter().filter(|b| {
                b.scope == scope || (scope.with_everywhere_keys() && b.scope == Scope::Everywhere)
            }) {
                for key in binding.keys {
                    assert!(!seen.contains(key), "{key:?} bound twice in {scope:?}");
                    seen.push(*key);
                }
            }
        }
    }

    #[test]
    fn questions_and_forms_read_their_own_scope_only() {
        let key = |c| KeyEvent::from(KeyCode::Char(c));
        assert_eq!(action_in(Scope::Confirm, key('y')), Some(Action::Yes));
        assert_eq!(
            action_in(Scope::RestoreQuestion, KeyEvent::from(KeyCode::Esc)),
            Some(Action::No)
        );
        // `q` quits on the dashboard but is a letter in a form.
        assert_eq!(action_in(Scope::NewClientForm, key('q')), None);
        assert_eq!(hint_line(Scope::Confirm), "y yes · n/Esc no");
        assert_eq!(
            hint_line(Scope::RestoreForm),
            "Tab/↑↓ move · Enter start · Esc back"
        );
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
