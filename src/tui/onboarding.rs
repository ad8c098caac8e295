//! The "new client" screen's state: a short form (client name, the target's
//! public key file, the address the target reaches this server by), then the
//! setup plan with each action's command, a confirmation, the results with
//! the copy test, and the target server's lines to paste. Planning and
//! applying run in the background (they read and change the machine); this
//! state only records what they report. No I/O here.

use crossterm::event::{KeyCode, KeyEvent};

use crate::ops::setup::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Client,
    KeyFile,
    BackupHost,
    Home,
}

const FIELDS: [Field; 4] = [
    Field::Client,
    Field::KeyFile,
    Field::BackupHost,
    Field::Home,
];

/// What the form asks for, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupText {
    pub client: String,
    pub key_file: String,
    pub backup_host: String,
    /// The client user's home; empty: /home/USER.
    pub home: String,
}

/// A plan, as the background job found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub actions: Vec<Action>,
    /// Actions that need root when walwarden is not root, as "what: command".
    pub needs_root: Vec<String>,
    /// What to paste on the target server.
    pub instructions: String,
    /// Something to know before applying (an archive already in wal/).
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Form,
    Planning,
    Review(Planned),
    Applying(Planned),
    Done {
        ok: bool,
        lines: Vec<String>,
        instructions: String,
    },
}

/// What the screen wants the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnboardCommand {
    Plan(SetupText),
    Apply(SetupText, Vec<Action>),
    Leave,
}

#[derive(Debug, Clone)]
pub struct Onboarding {
    pub text: SetupText,
    pub focus: Field,
    pub phase: Phase,
    pub error: Option<String>,
}

impl Onboarding {
    pub fn new(default_backup_host: &str) -> Onboarding {
        Onboarding {
            text: SetupText {
                client: String::new(),
                key_file: String::new(),
                backup_host: default_backup_host.to_owned(),
                home: String::new(),
            },
            focus: Field::Client,
            phase: Phase::Form,
            error: None,
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<OnboardCommand> {
        match &self.phase {
            Phase::Form => self.on_form_key(key),
            Phase::Planning | Phase::Applying(_) => None,
            Phase::Review(planned) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') if planned.needs_root.is_empty() => {
                    let actions = planned.actions.clone();
                    self.phase = Phase::Applying(planned.clone());
                    Some(OnboardCommand::Apply(self.text.clone(), actions))
                }
                KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') => {
                    self.phase = Phase::Form;
                    None
                }
                _ => None,
            },
            Phase::Done { .. } => {
                matches!(key.code, KeyCode::Esc | KeyCode::Enter).then_some(OnboardCommand::Leave)
            }
        }
    }

    fn on_form_key(&mut self, key: KeyEvent) -> Option<OnboardCommand> {
        let index = FIELDS.iter().position(|f| *f == self.focus).unwrap_or(0);
        match key.code {
            KeyCode::Esc => return Some(OnboardCommand::Leave),
            KeyCode::Tab | KeyCode::Down => self.focus = FIELDS[(index + 1) % FIELDS.len()],
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = FIELDS[(index + FIELDS.len() - 1) % FIELDS.len()]
            }
            KeyCode::Enter => {
                if self.text.client.trim().is_empty() {
                    self.error = Some("name the client (its folder under the root)".into());
                    self.focus = Field::Client;
                    return None;
                }
                self.error = None;
                self.phase = Phase::Planning;
                return Some(OnboardCommand::Plan(self.text.clone()));
            }
            KeyCode::Backspace => {
                self.field_mut().pop();
            }
            KeyCode::Char(c) => self.field_mut().push(c),
            _ => {}
        }
        None
    }

    fn field_mut(&mut self) -> &mut String {
        match self.focus {
            Field::Client => &mut self.text.client,
            Field::KeyFile => &mut self.text.key_file,
            Field::BackupHost => &mut self.text.backup_host,
            Field::Home => &mut self.text.home,
        }
    }

    /// The plan arrived (or planning failed: back to the form with why).
    pub fn planned(&mut self, result: Result<Planned, String>) {
        match result {
            Ok(planned) => self.phase = Phase::Review(planned),
            Err(error) => {
                self.error = Some(error);
                self.phase = Phase::Form;
            }
        }
    }

    /// Applying finished: what each action and the copy test said.
    pub fn applied(&mut self, ok: bool, lines: Vec<String>) {
        let instructions = match &self.phase {
            Phase::Applying(planned) | Phase::Review(planned) => planned.instructions.clone(),
            _ => String::new(),
        };
        self.phase = Phase::Done {
            ok,
            lines,
            instructions,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    fn planned(needs_root: Vec<String>) -> Planned {
        Planned {
            actions: vec![Action::CreateRoot {
                path: PathBuf::from("/b"),
            }],
            needs_root,
            instructions: "paste this".into(),
            warning: None,
        }
    }

    #[test]
    fn the_form_needs_a_name_then_plans_then_applies_on_y() {
        let mut screen = Onboarding::new("backup1");
        assert_eq!(screen.on_key(key(KeyCode::Enter)), None);
        assert!(screen.error.is_some());
        for c in "acme".chars() {
            screen.on_key(key(KeyCode::Char(c)));
        }
        let Some(OnboardCommand::Plan(text)) = screen.on_key(key(KeyCode::Enter)) else {
            panic!("no plan asked")
        };
        assert_eq!(text.client, "acme");
        assert_eq!(text.backup_host, "backup1");
        assert_eq!(screen.phase, Phase::Planning);
        screen.planned(Ok(planned(Vec::new())));
        assert_eq!(screen.on_key(key(KeyCode::Char('x'))), None);
        let Some(OnboardCommand::Apply(_, actions)) = screen.on_key(key(KeyCode::Char('y'))) else {
            panic!("y did not apply")
        };
        assert_eq!(actions.len(), 1);
        screen.applied(true, vec!["done".into()]);
        assert!(
            matches!(&screen.phase, Phase::Done { instructions, .. } if instructions == "paste this")
        );
        assert_eq!(
            screen.on_key(key(KeyCode::Esc)),
            Some(OnboardCommand::Leave)
        );
    }

    #[test]
    fn y_does_nothing_when_root_is_needed_and_esc_goes_back_to_the_form() {
        let mut screen = Onboarding::new("backup1");
        screen.phase = Phase::Review(planned(vec!["useradd".into()]));
        assert_eq!(screen.on_key(key(KeyCode::Char('y'))), None);
        assert!(matches!(screen.phase, Phase::Review(_)));
        assert_eq!(screen.on_key(key(KeyCode::Esc)), None);
        assert_eq!(screen.phase, Phase::Form);
        screen.planned(Err("bad key".into()));
        assert_eq!(screen.error.as_deref(), Some("bad key"));
    }
}
