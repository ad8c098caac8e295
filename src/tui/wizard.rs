//! The restore wizard's state: a short form, then the engine's steps as
//! they run (marks, commands, log lines), the confirmation it is waiting
//! for, and the summary. The engine runs in the background; this state only
//! records what it reports and what the engineer answers. No I/O here.
//!
//! The form's settings field is pre-filled with the settings this host
//! needs (the core's `proposed_settings`, run in the background when the
//! form opens and again for each new data directory), until the engineer
//! edits it. Enter waits for the proposals of the data directory typed, so
//! the dry run starts with them and passes the preflight's settings check.

use std::collections::VecDeque;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};

use crate::tui::keymap::{self, Action, Scope};

use crate::config::Config;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::request::{RestoreRequest, guarded_why};
use crate::ops::restore::steps::{StepKind, Summary};
use crate::ops::walget::progress::ReplayProgress;

/// What the engine reports, in order.
#[derive(Debug)]
pub enum RestoreEvent {
    Step(StepKind, Outcome, String),
    Command(String),
    Progress(StepKind, String),
    Gauge(StepKind, f64, String),
    /// The replay's progress from the helper's request log, read by the
    /// restore's own thread about once a second while replay runs.
    Replay(ReplayProgress),
    /// The engine waits for a yes or no.
    Ask(String),
    Finished(Result<Box<Summary>, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    DataDir,
    TargetTime,
    OsUser,
    /// `KEY=VALUE` settings for the restored server, comma-separated.
    Settings,
    DryRun,
}

const FIELDS: [Field; 5] = [
    Field::DataDir,
    Field::TargetTime,
    Field::OsUser,
    Field::Settings,
    Field::DryRun,
];

/// Proposed settings, and why each is needed (one line each).
pub type ProposedSettings = (Vec<(String, String)>, Vec<String>);

/// The settings this host needs, as far as the wizard knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposals {
    /// Asked for, for this data directory (empty: not chosen yet).
    Asked {
        data_dir: String,
    },
    /// Worked out: the settings, and why each is needed.
    Ready {
        data_dir: String,
        settings: Vec<(String, String)>,
        reasons: Vec<String>,
    },
    Failed {
        data_dir: String,
        error: String,
    },
}

impl Proposals {
    /// The data directory these proposals are for.
    pub fn data_dir(&self) -> &str {
        match self {
            Proposals::Asked { data_dir }
            | Proposals::Ready { data_dir, .. }
            | Proposals::Failed { data_dir, .. } => data_dir,
        }
    }
}

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
    /// Work out the settings this host needs for a restore like this one.
    Propose(Box<RestoreRequestText>),
    Answer(bool),
    Leave,
}

/// The form's fields as typed (the settings parsed); the loop turns them
/// into a `RestoreRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequestText {
    pub client: String,
    pub data_dir: String,
    pub target_time: String,
    pub os_user: String,
    pub settings: Vec<(String, String)>,
    pub dry_run: bool,
}

impl RestoreRequestText {
    /// The core's defaults for this client (what `walwarden restore` starts
    /// from too), with what the form changes.
    pub fn to_request(&self, config: &Config) -> RestoreRequest {
        RestoreRequest {
            target_time: Some(self.target_time.trim().to_owned()).filter(|t| !t.is_empty()),
            os_user: self.os_user.trim().to_owned(),
            settings: self.settings.clone(),
            dry_run: self.dry_run,
            ..RestoreRequest::new(config, &self.client, PathBuf::from(self.data_dir.trim()))
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
    /// The settings field as typed (or pre-filled).
    pub settings: String,
    /// The engineer typed in the settings field: proposals no longer replace it.
    pub settings_edited: bool,
    pub proposals: Proposals,
    /// Enter was pressed while the proposals for the data directory were
    /// on their way: the run starts when they arrive.
    pub start_when_proposed: bool,
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
    /// Replay against the line's end (segments, MB/s, time left), once the
    /// restored server asks for WAL.
    pub replay: Option<ReplayProgress>,
    pub summary: Option<Summary>,
    pub form_error: Option<String>,
}

impl Wizard {
    pub fn new(client: &str) -> Wizard {
        Wizard {
            client: client.to_owned(),
            data_dir: String::new(),
            target_time: String::new(),
            os_user: crate::ops::restore::request::DEFAULT_OS_USER.into(),
            settings: String::new(),
            settings_edited: false,
            proposals: Proposals::Asked {
                data_dir: String::new(),
            },
            start_when_proposed: false,
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
            replay: None,
            summary: None,
            form_error: None,
        }
    }

    /// Where the wizard's keys are looked up in the key table now.
    pub fn scope(&self) -> Scope {
        match (&self.question, &self.phase) {
            (Some(_), _) => Scope::RestoreQuestion,
            (None, Phase::Form) => Scope::RestoreForm,
            (None, Phase::Finished { .. }) => Scope::Done,
            (None, Phase::Running) => Scope::Restore,
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<WizardCommand> {
        let action = keymap::action_in(self.scope(), key);
        match self.scope() {
            Scope::RestoreQuestion => {
                let yes = match action? {
                    Action::Yes => true,
                    Action::No => false,
                    _ => return None,
                };
                self.question = None;
                Some(WizardCommand::Answer(yes))
            }
            Scope::RestoreForm => self.on_form_key(action, key),
            Scope::Done => (action == Some(Action::Back)).then_some(WizardCommand::Leave),
            _ => None,
        }
    }

    fn on_form_key(&mut self, action: Option<Action>, key: KeyEvent) -> Option<WizardCommand> {
        let index = FIELDS.iter().position(|f| *f == self.focus).unwrap_or(0);
        match (action, key.code) {
            (Some(Action::Back), _) => return Some(WizardCommand::Leave),
            (Some(Action::NextField | Action::PreviousField), _) => {
                self.focus = if action == Some(Action::NextField) {
                    FIELDS[(index + 1) % FIELDS.len()]
                } else {
                    FIELDS[(index + FIELDS.len() - 1) % FIELDS.len()]
                };
                // Leaving the data directory: the proposals follow it.
                if FIELDS[index] == Field::DataDir {
                    return self.propose_again();
                }
            }
            (Some(Action::Submit), _) => return self.submit(),
            (_, KeyCode::Char(' ')) if self.focus == Field::DryRun => self.dry_run = !self.dry_run,
            (_, KeyCode::Backspace) => {
                self.settings_edited |= self.focus == Field::Settings;
                self.field_mut().map(String::pop);
            }
            (_, KeyCode::Char(c)) => {
                self.settings_edited |= self.focus == Field::Settings;
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
            Field::Settings => Some(&mut self.settings),
            Field::DryRun => None,
        }
    }

    /// The form as a request; `Err` with what is wrong (and the field focused).
    fn request_text(&mut self) -> Result<RestoreRequestText, String> {
        if !self.data_dir.trim().starts_with('/') {
            self.focus = Field::DataDir;
            return Err("the data directory must be an absolute path".into());
        }
        let settings =
            crate::ops::restore::recovery_conf::parse_settings(&self.settings).map_err(|e| {
                self.focus = Field::Settings;
                e.to_string().replacen("--set ", "setting ", 1)
            })?;
        if let Some((key, why)) = settings
            .iter()
            .find_map(|(key, _)| Some((key, guarded_why(key)?)))
        {
            self.focus = Field::Settings;
            return Err(format!(
                "{key} is the restore's own to set: {why} (only `walwarden restore --set {key}=… --force unsafe-settings` goes past this)"
            ));
        }
        Ok(RestoreRequestText {
            client: self.client.clone(),
            data_dir: self.data_dir.trim().to_owned(),
            target_time: self.target_time.clone(),
            os_user: self.os_user.clone(),
            settings,
            dry_run: self.dry_run,
        })
    }

    /// Enter: checks the form, then starts, unless the settings still wait
    /// for the proposals of this data directory (then it starts when they come).
    fn submit(&mut self) -> Option<WizardCommand> {
        let text = match self.request_text() {
            Ok(text) => text,
            Err(error) => {
                self.form_error = Some(error);
                return None;
            }
        };
        self.form_error = None;
        if !self.settings_edited {
            let for_this = self.proposals.data_dir() == text.data_dir;
            match &self.proposals {
                Proposals::Asked { .. } if for_this => {
                    self.start_when_proposed = true;
                    return None;
                }
                Proposals::Ready { .. } | Proposals::Failed { .. } if for_this => {}
                _ => {
                    self.start_when_proposed = true;
                    return self.propose_again();
                }
            }
        }
        self.start_when_proposed = false;
        self.phase = Phase::Running;
        Some(WizardCommand::Start(Box::new(text)))
    }

    /// Asks for the proposals of the data directory in the form (empty: not
    /// chosen yet), unless they are known or on their way, or the engineer
    /// has written the settings.
    pub fn propose_again(&mut self) -> Option<WizardCommand> {
        let data_dir = self.data_dir.trim().to_owned();
        if self.settings_edited || self.proposals.data_dir() == data_dir {
            return None;
        }
        self.proposals = Proposals::Asked {
            data_dir: data_dir.clone(),
        };
        Some(self.propose(data_dir))
    }

    /// The request for proposals: the form's, without its settings (the
    /// proposals are the settings).
    pub fn propose(&self, data_dir: String) -> WizardCommand {
        WizardCommand::Propose(Box::new(RestoreRequestText {
            client: self.client.clone(),
            data_dir,
            target_time: String::new(),
            os_user: self.os_user.trim().to_owned(),
            settings: Vec::new(),
            dry_run: true,
        }))
    }

    /// The proposals for `data_dir` arrived (or could not be worked out).
    /// They fill the settings field unless the engineer wrote in it; a
    /// start that waited for them goes now.
    pub fn proposed(
        &mut self,
        data_dir: &str,
        result: Result<ProposedSettings, String>,
    ) -> Option<WizardCommand> {
        if self.phase != Phase::Form || self.proposals.data_dir() != data_dir {
            // Left behind by a newer data directory, or too late.
            return None;
        }
        let data_dir = data_dir.to_owned();
        self.proposals = match result {
            Ok((settings, reasons)) => {
                if !self.settings_edited {
                    self.settings = crate::ops::restore::recovery_conf::settings_text(&settings);
                }
                Proposals::Ready {
                    data_dir,
                    settings,
                    reasons,
                }
            }
            Err(error) => Proposals::Failed { data_dir, error },
        };
        if std::mem::take(&mut self.start_when_proposed) {
            return self.submit();
        }
        None
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
            RestoreEvent::Replay(progress) => {
                if let Some(ratio) = progress.fraction() {
                    self.gauge = Some((StepKind::FollowLog, ratio, "replay".to_owned()));
                }
                self.replay = Some(progress);
            }
            RestoreEvent::Ask(question) => self.question = Some(question),
            RestoreEvent::Finished(result) => {
                self.question = None;
                self.phase = match result {
                    Ok(summary) => {
                        let mut message = format!("journal: {}", summary.journal.display());
                        if !self.dry_run {
                            message.push_str(&format!("; {}", summary.phases.text()));
                        }
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

    fn type_text(wizard: &mut Wizard, text: &str) {
        for c in text.chars() {
            wizard.on_key(key(KeyCode::Char(c)));
        }
    }

    /// The proposals for `data_dir` arrive, as the background job reports them.
    fn proposals(
        wizard: &mut Wizard,
        data_dir: &str,
        settings: &[(&str, &str)],
    ) -> Option<WizardCommand> {
        let settings = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wizard.proposed(data_dir, Ok((settings, vec!["because".into()])))
    }

    #[test]
    fn the_form_refuses_a_relative_path_and_starts_a_dry_run_by_default() {
        let mut wizard = Wizard::new("acme");
        type_text(&mut wizard, "data");
        assert_eq!(wizard.on_key(key(KeyCode::Enter)), None);
        assert!(wizard.form_error.is_some());
        wizard.data_dir = "/srv/pg/main".into();
        // Enter waits for this data directory's proposals, then starts.
        assert!(matches!(
            wizard.on_key(key(KeyCode::Enter)),
            Some(WizardCommand::Propose(text)) if text.data_dir == "/srv/pg/main"
        ));
        assert_eq!(wizard.phase, Phase::Form);
        let Some(WizardCommand::Start(text)) = proposals(&mut wizard, "/srv/pg/main", &[]) else {
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

    /// The proposals asked for when the form opened (no data directory yet)
    /// fill the settings; leaving the data directory asks again for it, and
    /// the newer answer replaces the older; an answer for a directory left
    /// behind is ignored.
    #[test]
    fn proposals_fill_the_settings_and_follow_the_data_directory() {
        let mut wizard = Wizard::new("acme");
        assert_eq!(wizard.proposals.data_dir(), "");
        proposals(
            &mut wizard,
            "",
            &[
                ("unix_socket_directories", "/var/run/postgresql"),
                ("port", "54321"),
            ],
        );
        assert_eq!(
            wizard.settings,
            "unix_socket_directories=/var/run/postgresql, port=54321"
        );
        type_text(&mut wizard, "/srv/pg/main");
        assert!(matches!(
            wizard.on_key(key(KeyCode::Tab)),
            Some(WizardCommand::Propose(text)) if text.data_dir == "/srv/pg/main" && text.settings.is_empty()
        ));
        assert_eq!(
            wizard.on_key(key(KeyCode::BackTab)),
            None,
            "not asked again for the same directory"
        );
        // A late answer for the old (empty) directory changes nothing.
        proposals(&mut wizard, "", &[("port", "1")]);
        assert!(wizard.settings.contains("port=54321"));
        // The server on /srv/pg/main holds 5432 and is stopped by the restore: no port needed.
        proposals(
            &mut wizard,
            "/srv/pg/main",
            &[("unix_socket_directories", "/var/run/postgresql")],
        );
        assert_eq!(
            wizard.settings,
            "unix_socket_directories=/var/run/postgresql"
        );
        let Some(WizardCommand::Start(text)) = wizard.on_key(key(KeyCode::Enter)) else {
            panic!("the proposals for this directory are in: Enter starts")
        };
        assert_eq!(
            text.settings,
            vec![(
                "unix_socket_directories".to_string(),
                "/var/run/postgresql".to_string()
            )]
        );
    }

    /// What the engineer types in the settings field is theirs: proposals
    /// arriving later do not replace it, and Enter does not wait for them.
    #[test]
    fn edited_settings_are_kept_and_guarded_keys_are_refused_with_why() {
        let mut wizard = Wizard::new("acme");
        wizard.data_dir = "/srv/pg/main".into();
        wizard.focus = Field::Settings;
        type_text(&mut wizard, "port=6000, archive_mode=on");
        assert!(wizard.settings_edited);
        assert_eq!(wizard.on_key(key(KeyCode::Enter)), None);
        let error = wizard.form_error.clone().unwrap_or_default();
        assert!(
            error.contains("archive_mode") && error.contains("archiving stays off"),
            "{error}"
        );
        assert_eq!(wizard.phase, Phase::Form);
        for _ in 0..", archive_mode=on".len() {
            wizard.on_key(key(KeyCode::Backspace));
        }
        proposals(&mut wizard, "", &[("port", "54321")]);
        assert_eq!(wizard.settings, "port=6000", "the engineer's text stays");
        let Some(WizardCommand::Start(text)) = wizard.on_key(key(KeyCode::Enter)) else {
            panic!("edited settings start at once")
        };
        assert_eq!(
            text.settings,
            vec![("port".to_string(), "6000".to_string())]
        );
        // A bad item is named.
        let mut wizard = Wizard::new("acme");
        wizard.data_dir = "/srv/pg/main".into();
        wizard.focus = Field::Settings;
        type_text(&mut wizard, "port 6000");
        assert_eq!(wizard.on_key(key(KeyCode::Enter)), None);
        assert!(
            wizard
                .form_error
                .as_deref()
                .is_some_and(|e| e.contains("expected KEY=VALUE")),
            "{:?}",
            wizard.form_error
        );
    }
}
