//! Keys, resolved through the one key table (`keymap`) into actions, in
//! the one scope that holds them (`App::key_scope`): an overlay's (the error
//! popup, a question, the help), the filter being typed, or the screen's.
//! The forms of the wizard and the new-client screen read their own keys
//! the same way. The mouse follows the same scope and becomes the same
//! actions: a click selects a row, a double click opens it, the wheel moves.

use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::{App, Command, Confirm, Screen};
use crate::tui::keymap::{self, Action, Scope};
use crate::tui::onboarding::{OnboardCommand, Onboarding};
use crate::tui::wizard::{Wizard, WizardCommand};

/// Two clicks on one row within this are a double click (the usual desktop default).
const DOUBLE_CLICK: Duration = Duration::from_millis(500);

impl App {
    /// A key goes to the scope that holds the keys now (`key_scope`) and to
    /// nothing else: an overlay (the error popup, a question, the help)
    /// consumes every key, acting only on its own.
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let scope = self.key_scope();
        let action = keymap::action_for(scope, key);
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            // Never text, never an answer: it quits from anywhere.
            return self.apply(Action::Quit);
        }
        match scope {
            Scope::Error => {
                if action == Some(Action::Back) {
                    self.last_error = None;
                }
                Vec::new()
            }
            Scope::Confirm => self.on_confirm_key(action),
            Scope::Help => match action {
                Some(Action::ToggleHelp) => {
                    self.show_help = false;
                    Vec::new()
                }
                Some(Action::Quit) => self.apply(Action::Quit),
                _ => Vec::new(),
            },
            Scope::Filter => self.on_filter_key(action, key),
            _ if self.screen == Screen::Restore => self.on_wizard_key(key),
            _ if self.screen == Screen::NewClient => self.on_onboarding_key(key),
            _ => action.map_or_else(Vec::new, |action| self.apply(action)),
        }
    }

    /// The pending question takes the key: yes runs its commands, no drops them.
    fn on_confirm_key(&mut self, action: Option<Action>) -> Vec<Command> {
        let yes = match action {
            Some(Action::Yes) => true,
            Some(Action::No) => false,
            _ => return Vec::new(),
        };
        let Some(confirm) = self.confirm.take() else {
            return Vec::new();
        };
        if !yes {
            return Vec::new();
        }
        for command in &confirm.commands {
            if let Command::Drill(name) = command {
                let job = self.jobs.entry(name.clone()).or_default();
                job.drill_running = true;
                job.drill_lines.clear();
                self.screen = Screen::Detail {
                    client: name.clone(),
                    scroll: 0,
                };
            }
        }
        confirm.commands
    }

    /// Keys on the wizard's screen go to the wizard first: its form takes text.
    fn on_wizard_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let Some(wizard) = &mut self.wizard else {
            return Vec::new();
        };
        let command = wizard.on_key(key);
        self.wizard_commands(command)
    }

    /// What the wizard asked for, as the loop's commands.
    pub(super) fn wizard_commands(&mut self, command: Option<WizardCommand>) -> Vec<Command> {
        match command {
            None => Vec::new(),
            Some(WizardCommand::Answer(yes)) => vec![Command::AnswerRestore(yes)],
            Some(WizardCommand::Leave) => {
                self.wizard = None;
                self.screen = Screen::Dashboard;
                Vec::new()
            }
            Some(WizardCommand::Start(text)) => vec![Command::StartRestore {
                client: text.client.clone(),
                request: Box::new(text.to_request(&self.config)),
            }],
            Some(WizardCommand::Propose(text)) => vec![Command::ProposeSettings {
                client: text.client.clone(),
                data_dir: text.data_dir.clone(),
                request: Box::new(text.to_request(&self.config)),
            }],
        }
    }

    /// Keys on the new-client screen go to its form first: it takes text.
    fn on_onboarding_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let Some(screen) = &mut self.onboarding else {
            return Vec::new();
        };
        match screen.on_key(key) {
            None => Vec::new(),
            Some(OnboardCommand::Plan(text)) => vec![Command::PlanSetup(text)],
            Some(OnboardCommand::Apply(text, actions)) => vec![Command::ApplySetup(text, actions)],
            Some(OnboardCommand::Leave) => {
                self.onboarding = None;
                self.screen = Screen::Dashboard;
                Vec::new()
            }
        }
    }

    /// The client a key acts on: the detail's, else the dashboard's selection.
    fn focused_client(&self) -> Option<String> {
        match &self.screen {
            Screen::Detail { client, .. } => Some(client.clone()),
            _ => self.selected_row().map(|r| r.name.clone()),
        }
    }

    pub fn apply(&mut self, action: Action) -> Vec<Command> {
        match action {
            Action::Quit => {
                self.quit = true;
                return vec![Command::Quit];
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::Rescan => {
                self.scanning = true;
                return vec![Command::Rescan];
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.viewport.page as isize)),
            Action::PageDown => self.move_by(self.viewport.page as isize),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::Open => {
                if let Some(name) = self.selected_row().map(|r| r.name.clone()) {
                    self.screen = Screen::Detail {
                        client: name.clone(),
                        scroll: 0,
                    };
                    return self.read_target(&name, false);
                }
            }
            Action::ReadTarget => {
                if let Screen::Detail { client, .. } = &self.screen {
                    let client = client.clone();
                    return self.read_target(&client, true);
                }
            }
            Action::Verify => {
                if let Some(name) = self.focused_client() {
                    return self.start_verification(&name);
                }
            }
            Action::Restore => {
                if let Some(row) = self.selected_row() {
                    let wizard = Wizard::new(&row.name);
                    // The settings this host needs, worked out while the form is filled in.
                    let propose = wizard.propose(wizard.proposals.data_dir().to_owned());
                    self.wizard = Some(wizard);
                    self.screen = Screen::Restore;
                    return self.wizard_commands(Some(propose));
                }
            }
            Action::DeepCheck => {
                if let Some(name) = self.focused_client() {
                    let job = self.jobs.entry(name.clone()).or_default();
                    if job.deep_progress.is_none() {
                        job.deep_progress = Some((0, 0));
                        self.screen = Screen::Detail {
                            client: name.clone(),
                            scroll: 0,
                        };
                        return vec![Command::DeepCheck(name)];
                    }
                }
            }
            Action::Drill => {
                if let Some(name) = self.focused_client()
                    && !self.jobs.get(&name).is_some_and(|j| j.drill_running)
                {
                    self.confirm = Some(Confirm {
                        question: format!(
                            "Restore drill of {name}: restore its base backup and archive into a scratch folder in {}, start it on a unix socket, check it answers, then remove it. The archive is only read. Run it?",
                            crate::ops::drill::DEFAULT_SCRATCH
                        ),
                        commands: vec![Command::Drill(name)],
                    });
                }
            }
            Action::NewClient => {
                self.onboarding = Some(Onboarding::new(&self.default_backup_host));
                self.screen = Screen::NewClient;
            }
            Action::EndVerification => match &mut self.verification {
                Some(v) if !v.is_over(self.now) => v.end_early(self.now),
                _ => {
                    self.verification = None;
                    self.screen = Screen::Dashboard;
                }
            },
            Action::Back => match self.screen {
                Screen::Detail { .. } => self.screen = Screen::Dashboard,
                Screen::Verify => {
                    if let Some(v) = &mut self.verification {
                        v.end_early(self.now);
                    }
                    self.verification = None;
                    self.screen = Screen::Dashboard;
                }
                Screen::Restore | Screen::NewClient => {}
                Screen::Dashboard => {
                    if !self.filter.is_empty() {
                        self.filter.clear();
                        self.rebuild_rows();
                    }
                }
            },
            Action::StartFilter => self.editing_filter = true,
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.rebuild_rows();
            }
            Action::ReverseSort => {
                self.sort_reversed = !self.sort_reversed;
                self.rebuild_rows();
            }
            // Answers and form keys belong to their own scopes, read above.
            Action::Yes
            | Action::No
            | Action::NextField
            | Action::PreviousField
            | Action::Submit => {}
        }
        Vec::new()
    }

    fn on_filter_key(&mut self, action: Option<Action>, key: KeyEvent) -> Vec<Command> {
        match (action, key.code) {
            (Some(Action::Submit), _) => self.editing_filter = false,
            (Some(Action::Back), _) => {
                self.editing_filter = false;
                self.filter.clear();
            }
            (_, KeyCode::Backspace) => {
                self.filter.pop();
            }
            (_, KeyCode::Char(c)) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c)
            }
            _ => return Vec::new(),
        }
        self.rebuild_rows();
        Vec::new()
    }

    /// The mouse goes where the keys go: an overlay or a form holds it (and
    /// ignores it), else a click or a wheel turn becomes the same actions as
    /// the keys (Up, Down, Open) on the dashboard and the detail.
    pub(super) fn on_mouse(&mut self, mouse: MouseEvent, at: SystemTime) -> Vec<Command> {
        let scope = self.key_scope();
        if !matches!(scope, Scope::Dashboard | Scope::Detail) {
            return Vec::new();
        }
        // A notch moves one row of the list, or a few lines of text.
        let notch = if scope == Scope::Detail { 3 } else { 1 };
        let repeat =
            |app: &mut App, action: Action| (0..notch).flat_map(|_| app.apply(action)).collect();
        match mouse.kind {
            MouseEventKind::ScrollDown => repeat(self, Action::Down),
            MouseEventKind::ScrollUp => repeat(self, Action::Up),
            MouseEventKind::Down(MouseButton::Left) if scope == Scope::Dashboard => {
                let Some(row) = self.row_at(mouse.row) else {
                    self.last_click = None;
                    return Vec::new();
                };
                let double = self.last_click.is_some_and(|(previous, when)| {
                    previous == row && at.duration_since(when).is_ok_and(|gap| gap <= DOUBLE_CLICK)
                });
                self.move_by(row as isize - self.selected as isize);
                if double {
                    self.last_click = None;
                    return self.apply(Action::Open);
                }
                self.last_click = Some((row, at));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The client row drawn on screen line `y`, if any.
    fn row_at(&self, y: u16) -> Option<usize> {
        let line = y.checked_sub(self.viewport.list_top)?;
        if line >= self.viewport.list_rows {
            return None;
        }
        let index = self.list_offset + line as usize;
        (index < self.rows.len()).then_some(index)
    }

    fn move_by(&mut self, delta: isize) {
        match &mut self.screen {
            Screen::Dashboard => {
                let last = self.rows.len().saturating_sub(1) as isize;
                self.selected = (self.selected as isize)
                    .saturating_add(delta)
                    .clamp(0, last.max(0)) as usize;
                self.follow_selection();
            }
            Screen::Detail { scroll, .. } => {
                *scroll = (*scroll as isize)
                    .saturating_add(delta)
                    .clamp(0, self.viewport.detail_max_scroll as isize)
                    as u16;
            }
            Screen::Verify | Screen::Restore | Screen::NewClient => {}
        }
    }
}
