//! The restore wizard's state: a short form, then the engine's steps as
//! they run (marks, commands, log lines), the confirmation it is waiting
//! for, and the summary. The engine runs in the background; this state only
//! records what it reports and what the engineer answers. No I/O here.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};

use crate::config::Config;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::request::RestoreRequest;
use crate::ops::restore::steps::{StepKind, Summary};

/// What the engine reports, in order.
#[derive(Debug)]
pub enum RestoreEvent {
    Step(StepKind, Outcome, String),
    Command(String),
    Progress(StepKind, String),
    Gauge(StepKind, f64, String),
    /// The engine waits for a yes or no.
    Ask(String),
    Finished(Result<Box<Summary>, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    DataDir,
    TargetTime,
    OsUser,
    DryRun,
}

const FIELDS: [Field; 4] = [
    Field::DataDir,
    Field::TargetTime,
    Field::OsUser,
    Field::DryRun,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Form,
    Running,
    Finished { ok: bool, message: String },
}

/// What the wizard wants the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WizardCommand {
    Start(Box<RestoreRequestText>),
    Answer(bool),
    Leave,
}

/// The form's fields as typed; the loop turns them into a `RestoreRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequestText {
    pub client: String,
    pub data_dir: String,
    pub target_time: String,
    pub os_user: String,
    pub dry_run: bool,
}

impl RestoreRequestText {
    pub fn to_request(&self, config: &Config) -> RestoreRequest {
        RestoreRequest {
            data_dir: PathBuf::from(self.data_dir.trim()),
            target_time: Some(self.target_time.trim().to_owned()).filter(|t| !t.is_empty()),
            timeline: None,
            pg_bin: None,
            os_user: self.os_user.trim().to_owned(),
            settings: Vec::new(),
            dry_run: self.dry_run,
            purge: false,
            replay_timeout: Duration::from_secs(3600),
            local: config.policy_for(&self.client).local.clone(),
            forced: Vec::new(),
            resume: false,
            target: config.target_for(&self.client).cloned(),
        }
    }
}

/// Lines of log kept on screen.
const LOG_LINES: usize = 200;

#[derive(Debug, Clone)]
pub struct Wizard {
    pub client: String,
    pub data_dir: String,
    pub target_time: String,
    pub os_user: String,
    pub dry_run: bool,
    pub focus: Field,
    pub phase: Phase,
    /// Each step's latest outcome and detail, in engine order.
    pub steps: Vec<(StepKind, Option<Outcome>, String)>,
    pub commands: Vec<String>,
    pub log: VecDeque<String>,
    pub question: Option<String>,
    /// The long step's progress: unpacking, then replay.
    pub gauge: Option<(StepKind, f64, String)>,
    pub summary: Option<Summary>,
    pub form_error: Option<String>,
}

impl Wizard {
    pub fn new(client: &str) -> Wizard {
        Wizard {
            client: client.to_owned(),
            data_dir: String::new(),
            target_time: String::new(),
            os_user: "postgres".into(),
            // A rehearsal first: the engineer turns it off to restore for real.
            dry_run: true,
            focus: Field::DataDir,
            phase: Phase::Form,
            steps: StepKind::ALL
                .iter()
                .map(|s| (*s, None, String::new()))
                .collect(),
            commands: Vec::new(),
            log: VecDeque::new(),
            question: None,
            gauge: None,
            summary: None,
            form_error: None,
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<WizardCommand> {
        if let Some(_question) = &self.question {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.question = None;
                    Some(WizardCommand::Answer(true))
                }
                // Esc at a confirmation cancels safely: the engine stops before the destructive action.
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.question = None;
                    Some(WizardCommand::Answer(false))
                }
                _ => None,
            };
        }
        match &self.phase {
            Phase::Form => self.on_form_key(key),
            Phase::Running => None,
            Phase::Finished { .. } => {
                matches!(key.code, KeyCode::Esc | KeyCode::Enter).then_some(WizardCommand::Leave)
            }
        }
    }

    fn on_form_key(&mut self, key: KeyEvent) -> Option<WizardCommand> {
        let index = FIELDS.iter().position(|f| *f == self.focus).unwrap_or(0);
        match key.code {
            KeyCode::Esc => return Some(WizardCommand::Leave),
            KeyCode::Tab | KeyCode::Down => self.focus = FIELDS[(index + 1) % FIELDS.len()],
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = FIELDS[(index + FIELDS.len() - 1) % FIELDS.len()]
            }
            KeyCode::Enter => {
                if !self.data_dir.trim().starts_with('/') {
                    self.form_error = Some("the data directory must be an absolute path".into());
                    self.focus = Field::DataDir;
                    return None;
                }
                self.form_error = None;
                self.phase = Phase::Running;
                return Some(WizardCommand::Start(Box::new(RestoreRequestText {
                    client: self.client.clone(),
                    data_dir: self.data_dir.clone(),
                    target_time: self.target_time.clone(),
                    os_user: self.os_user.clone(),
                    dry_run: self.dry_run,
                })));
            }
            KeyCode::Char(' ') if self.focus == Field::DryRun => self.dry_run = !self.dry_run,
            KeyCode::Backspace => {
                self.field_mut().map(String::pop);
            }
            KeyCode::Char(c) => {
                if let Some(field) = self.field_mut() {
                    field.push(c);
                }
            }
            _ => {}
        }
        None
    }

    fn field_mut(&mut self) -> Option<&mut String> {
        match self.focus {
            Field::DataDir => Some(&mut self.data_dir),
            Field::TargetTime => Some(&mut self.target_time),
            Field::OsUser => Some(&mut self.os_user),
            Field::DryRun => None,
        }
    }

    pub fn on_event(&mut self, event: RestoreEvent) {
        match event {
            RestoreEvent::Step(step, outcome, detail) => {
                if let Some(entry) = self.steps.iter_mut().find(|(s, _, _)| *s == step) {
                    entry.1 = Some(outcome);
                    entry.2 = detail;
                }
            }
            RestoreEvent::Command(text) => self.commands.push(text),
            RestoreEvent::Progress(_, line) => {
                self.log.push_back(line);
                while self.log.len() > LOG_LINES {
                    self.log.pop_front();
                }
            }
            RestoreEvent::Gauge(step, ratio, label) => self.gauge = Some((step, ratio, label)),
            RestoreEvent::Ask(question) => self.question = Some(question),
            RestoreEvent::Finished(result) => {
                self.question = None;
                self.phase = match result {
                    Ok(summary) => {
                        let message = format!("journal: {}", summary.journal.display());
                        self.summary = Some(*summary);
                        Phase::Finished { ok: true, message }
                    }
                    Err(error) => Phase::Finished {
                        ok: false,
                        message: error,
                    },
                };
            }
        }
    }

    /// The step running now: the first without an outcome, once the engine started.
    pub fn current_step(&self) -> Option<StepKind> {
        if self.phase != Phase::Running {
            return None;
        }
        self.steps
            .iter()
            .find(|(_, outcome, _)| outcome.is_none())
            .map(|(s, _, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    #[test]
    fn the_form_refuses_a_relative_path_and_starts_a_dry_run_by_default() {
        let mut wizard = Wizard::new("acme");
        for c in "data".chars() {
            wizard.on_key(key(KeyCode::Char(c)));
        }
        assert_eq!(wizard.on_key(key(KeyCode::Enter)), None);
        assert!(wizard.form_error.is_some());
        wizard.data_dir = "/srv/pg/main".into();
        let Some(WizardCommand::Start(text)) = wizard.on_key(key(KeyCode::Enter)) else {
            panic!("no start")
        };
        assert!(text.dry_run);
        assert_eq!(
            text.to_request(&Config::default()).data_dir,
            PathBuf::from("/srv/pg/main")
        );
        assert_eq!(wizard.phase, Phase::Running);
    }

    #[test]
    fn esc_at_a_confirmation_answers_no() {
        let mut wizard = Wizard::new("acme");
        wizard.phase = Phase::Running;
        wizard.on_event(RestoreEvent::Ask("Move aside?".into()));
        assert_eq!(
            wizard.on_key(key(KeyCode::Char('q'))),
            None,
            "other keys do not answer"
        );
        assert_eq!(
            wizard.on_key(key(KeyCode::Esc)),
            Some(WizardCommand::Answer(false))
        );
        assert!(wizard.question.is_none());
    }

    #[test]
    fn steps_are_marked_as_the_engine_reports_them() {
        let mut wizard = Wizard::new("acme");
        wizard.phase = Phase::Running;
        assert_eq!(wizard.current_step(), Some(StepKind::Preflight));
        wizard.on_event(RestoreEvent::Step(
            StepKind::Preflight,
            Outcome::Done,
            "ok".into(),
        ));
        assert_eq!(wizard.current_step(), Some(StepKind::StopRemote));
        wizard.on_event(RestoreEvent::Finished(Err("preflight refused".into())));
        assert!(matches!(wizard.phase, Phase::Finished { ok: false, .. }));
    }
}
