//! The dashboard's state and its update function (The Elm Architecture):
//! `update` takes an event, changes the state, and returns the side effects
//! for the loop to run. No I/O here, so the whole UI is testable headless.

use std::path::PathBuf;
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::archive::catalog::{Applied, Catalog, Client, Observation};
use crate::archive::watch::WatchMode;
use crate::checks::integrity::{BaseCheck, Progress, SegmentCheck};
use crate::checks::report::ClientReport;
use crate::checks::verify::{Verification, VerifySettings};
use crate::config::Config;
use crate::tui::keymap::{self, Action, Scope};
use crate::tui::wizard::{RestoreEvent, Wizard, WizardCommand};

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// The clock moved: ages go stale without file events.
    Tick(SystemTime),
    /// A background scan of the whole root finished.
    Scanned(Result<Catalog, String>),
    /// A background re-read of one client finished (`Err` with the reason; the folder may be gone).
    ClientScanned {
        name: String,
        result: Result<Box<Client>, String>,
    },
    /// File events resolved off this thread (stat, label, header), as many
    /// as arrived since the last frame.
    Observed(Vec<Observation>),
    /// The watcher started (how trustworthy it is), or could not start.
    Watching(Result<WatchMode, String>),
    /// The restore engine reported something.
    Restore(RestoreEvent),
    /// The recorded restore drills.
    Drills(Vec<crate::ops::drill::DrillRecord>),
    /// The quick check of segments (gzip trailer, first page) after a scan:
    /// each client's problems, replacing what an earlier check said of it.
    QuickChecked(Vec<(String, Vec<crate::checks::health::Problem>)>),
    BaseCheckProgress(Progress),
    BaseChecked(BaseCheck),
    SegmentChecked {
        seen_at: SystemTime,
        check: SegmentCheck,
    },
    /// A deep check read `done` of `total` files of a client.
    DeepProgress {
        client: String,
        done: u64,
        total: u64,
    },
    /// A deep check finished (`Err` when the client could not be read).
    DeepChecked {
        client: String,
        result: Result<Box<crate::checks::deep::DeepReport>, String>,
    },
    /// How far earlier deep checks proved each client, from their cache.
    DeepRemembered(Vec<(String, crate::checks::deep::DeepReport)>),
    /// A restore drill said what it is doing.
    DrillLine {
        client: String,
        line: String,
    },
    /// A restore drill finished and was recorded.
    DrillFinished(Box<crate::ops::drill::DrillRecord>),
    /// The new-client screen's plan, or why there is none.
    SetupPlanned(Result<crate::tui::onboarding::Planned, String>),
    /// The new-client screen's plan ran (each action's result, the copy test).
    SetupApplied {
        ok: bool,
        lines: Vec<String>,
    },
    /// The target server's side of a client, read over SSH.
    TargetRead {
        client: String,
        view: crate::pg::target::TargetView,
    },
    Resize,
}

/// A side effect for the loop to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Rescan,
    RescanClient(String),
    /// Read both base tarballs end to end (verification item 1).
    CheckBase(PathBuf),
    /// Read one new segment end to end (verification item 4).
    CheckSegment {
        path: PathBuf,
        seen_at: SystemTime,
    },
    /// Re-read this client and run the restore engine on it in the background.
    StartRestore {
        client: String,
        request: Box<crate::ops::restore::request::RestoreRequest>,
    },
    /// The engineer's answer to the engine's pending question.
    AnswerRestore(bool),
    /// Read every file of a client to its end (results remembered per file).
    DeepCheck(String),
    /// Restore a client into a scratch directory, check it answers, remove it, record it.
    Drill(String),
    /// Work out what onboarding this client would change (reads the machine).
    PlanSetup(crate::tui::onboarding::SetupText),
    /// Onboard it: the reviewed actions, then the copy test.
    ApplySetup(
        crate::tui::onboarding::SetupText,
        Vec<crate::ops::setup::Action>,
    ),
    /// Read a client's target server over SSH in the background.
    ReadTarget {
        client: String,
        target: Box<crate::config::TargetServer>,
    },
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Status,
    Name,
    LastArrival,
    RestorableTo,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Status => "status",
            SortKey::Name => "name",
            SortKey::LastArrival => "last arrival",
            SortKey::RestorableTo => "restorable to",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Status => SortKey::Name,
            SortKey::Name => SortKey::LastArrival,
            SortKey::LastArrival => SortKey::RestorableTo,
            SortKey::RestorableTo => SortKey::Status,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    Detail {
        client: String,
        scroll: u16,
    },
    /// The verification window of `App::verification`.
    Verify,
    /// The restore wizard of `App::wizard`.
    Restore,
    /// The new-client screen of `App::onboarding`.
    NewClient,
}

pub struct App {
    pub root: std::path::PathBuf,
    pub config: Config,
    pub now: SystemTime,
    pub catalog: Option<Catalog>,
    /// Reports in display order (sorted, filtered).
    pub rows: Vec<ClientReport>,
    pub total_clients: usize,
    pub selected: usize,
    pub screen: Screen,
    pub show_help: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub sort: SortKey,
    pub sort_reversed: bool,
    pub scanning: bool,
    pub last_error: Option<String>,
    /// Lines a page scroll moves; set by the view from the terminal height.
    pub page: usize,
    pub quit: bool,
    /// False when NO_COLOR is set: status is then told by text alone.
    pub color: bool,
    /// How file events reach the catalog; `Err` when the watcher failed.
    pub watching: Option<Result<WatchMode, String>>,
    /// Changes applied since the start, for the header.
    pub events_applied: u64,
    /// The last detail scroll that still shows content; set by the view.
    pub detail_max_scroll: u16,
    pub verification: Option<Verification>,
    pub verify_settings: VerifySettings,
    pub wizard: Option<Wizard>,
    pub onboarding: Option<crate::tui::onboarding::Onboarding>,
    /// Restore drills recorded on this machine.
    pub drills: Vec<crate::ops::drill::DrillRecord>,
    /// Deep checks and drills started from the dashboard, per client.
    pub jobs: std::collections::BTreeMap<String, ClientJobs>,
    /// A question that must be answered y or n before `commands` run.
    pub confirm: Option<Confirm>,
    /// The new-client form's backup host; empty shows as "this host's name".
    pub default_backup_host: String,
    /// What each client's target server showed, when it was read.
    pub targets: std::collections::BTreeMap<String, TargetEntry>,
    /// What the quick check of segments found, by client.
    pub quick_problems: std::collections::HashMap<String, Vec<crate::checks::health::Problem>>,
}

/// A deep check or drill of one client, as the detail screen shows it.
#[derive(Debug, Clone, Default)]
pub struct ClientJobs {
    /// Files read of files to read, while a deep check runs.
    pub deep_progress: Option<(u64, u64)>,
    pub deep: Option<Result<crate::checks::deep::DeepReport, String>>,
    /// `deep` comes from earlier checks' memory, not from a check run here.
    pub deep_from_memory: bool,
    pub drill_running: bool,
    /// What the running (or last) drill said, newest last.
    pub drill_lines: Vec<String>,
    pub drill: Option<crate::ops::drill::DrillRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    pub commands: Vec<Command>,
}

/// A client's target server as the detail screen shows it.
#[derive(Debug, Clone, Default)]
pub struct TargetEntry {
    pub reading: bool,
    pub read_at: Option<SystemTime>,
    pub view: Option<crate::pg::target::TargetView>,
}

/// A target read this recently is not read again when the detail opens (`t` forces it).
const TARGET_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl App {
    pub fn new(root: std::path::PathBuf, config: Config, now: SystemTime) -> App {
        App {
            root,
            config,
            now,
            catalog: None,
            rows: Vec::new(),
            total_clients: 0,
            selected: 0,
            screen: Screen::Dashboard,
            show_help: false,
            filter: String::new(),
            editing_filter: false,
            sort: SortKey::Status,
            sort_reversed: false,
            scanning: true,
            last_error: None,
            page: 10,
            quit: false,
            color: true,
            watching: None,
            events_applied: 0,
            detail_max_scroll: u16::MAX,
            verification: None,
            verify_settings: VerifySettings::default(),
            wizard: None,
            onboarding: None,
            default_backup_host: String::new(),
            jobs: Default::default(),
            confirm: None,
            drills: Vec::new(),
            targets: Default::default(),
            quick_problems: std::collections::HashMap::new(),
        }
    }

    /// After a verification window whose client has a target: read it every
    /// 10 s until archive_timeout is back to production.
    fn verification_target_reads(&mut self) -> Vec<Command> {
        let Some(v) = &self.verification else {
            return Vec::new();
        };
        if !v.target_expected || !v.is_over(self.now) || v.target_settled() {
            return Vec::new();
        }
        let client = v.client.clone();
        let due = self
            .targets
            .get(&client)
            .and_then(|t| t.read_at)
            .and_then(|at| self.now.duration_since(at).ok())
            .is_none_or(|age| age >= std::time::Duration::from_secs(10))
            || v.target.is_none();
        if due {
            self.read_target(&client, true)
        } else {
            Vec::new()
        }
    }

    /// Reads `client`'s target server unless it was read a moment ago (or `force`).
    fn read_target(&mut self, client: &str, force: bool) -> Vec<Command> {
        let Some(target) = self.config.target_for(client) else {
            return Vec::new();
        };
        let entry = self.targets.entry(client.to_owned()).or_default();
        let fresh = entry
            .read_at
            .and_then(|at| self.now.duration_since(at).ok())
            .is_some_and(|age| age < TARGET_FRESH_FOR);
        if entry.reading || (fresh && !force) {
            return Vec::new();
        }
        entry.reading = true;
        vec![Command::ReadTarget {
            client: client.to_owned(),
            target: Box::new(target.clone()),
        }]
    }

    pub fn scope(&self) -> Scope {
        match self.screen {
            Screen::Dashboard => Scope::Dashboard,
            Screen::Detail { .. } => Scope::Detail,
            Screen::Verify => Scope::Verify,
            Screen::Restore => Scope::Restore,
            Screen::NewClient => Scope::NewClient,
        }
    }

    /// The newest successful drill of a client, if any was recorded.
    pub fn last_drill(&self, client: &str) -> Option<&crate::ops::drill::DrillRecord> {
        crate::ops::drill::last_success(&self.drills, client)
    }

    pub fn selected_row(&self) -> Option<&ClientReport> {
        self.rows.get(self.selected)
    }

    /// The client a detail screen shows, from the current reports.
    pub fn detail_client(&self) -> Option<(&ClientReport, &crate::archive::catalog::Client)> {
        let Screen::Detail { client, .. } = &self.screen else {
            return None;
        };
        let report = self.rows.iter().find(|r| &r.name == client)?;
        let scanned = self.catalog.as_ref()?.client(client)?;
        Some((report, scanned))
    }

    pub fn update(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Tick(now) => {
                self.now = now;
                self.rebuild_rows();
                self.verification_target_reads()
            }
            Event::Scanned(Ok(mut catalog)) => {
                self.scanning = false;
                self.last_error = None;
                // Keep what the watcher saw live: a rescan only knows mtimes.
                if let Some(old) = &self.catalog {
                    catalog.keep_live_arrivals_from(old);
                }
                self.catalog = Some(catalog);
                self.rebuild_rows();
                Vec::new()
            }
            Event::ClientScanned { name, result } => {
                if let Some(catalog) = &mut self.catalog {
                    match result {
                        Ok(client) => catalog.replace_client(*client),
                        Err(_) => catalog.remove_client(&name),
                    }
                }
                self.rebuild_rows();
                Vec::new()
            }
            Event::Observed(observations) => self.on_observations(observations),
            Event::Drills(history) => {
                self.drills = history;
                Vec::new()
            }
            Event::QuickChecked(results) => {
                self.quick_problems.extend(results);
                self.rebuild_rows();
                Vec::new()
            }
            Event::Restore(event) => {
                if let Some(wizard) = &mut self.wizard {
                    wizard.on_event(event);
                }
                Vec::new()
            }
            Event::Watching(mode) => {
                self.watching = Some(mode);
                Vec::new()
            }
            Event::BaseCheckProgress(progress) => {
                if let Some(v) = &mut self.verification {
                    v.base_progress = Some(progress);
                }
                Vec::new()
            }
            Event::BaseChecked(check) => {
                if let Some(v) = &mut self.verification {
                    v.base_checked(check);
                }
                Vec::new()
            }
            Event::SegmentChecked { seen_at, check } => {
                if let Some(v) = &mut self.verification {
                    v.segment_checked(seen_at, check);
                }
                Vec::new()
            }
            Event::Scanned(Err(error)) => {
                self.scanning = false;
                self.last_error = Some(error);
                Vec::new()
            }
            Event::TargetRead { client, view } => {
                if let Some(v) = &mut self.verification
                    && v.client == client
                {
                    if v.is_over(self.now) {
                        v.target_read(self.now, view.clone());
                    } else {
                        v.target_read_at_start(&view);
                    }
                }
                let entry = self.targets.entry(client).or_default();
                entry.reading = false;
                entry.read_at = Some(self.now);
                entry.view = Some(view);
                self.rebuild_rows();
                Vec::new()
            }
            Event::DeepProgress {
                client,
                done,
                total,
            } => {
                self.jobs.entry(client).or_default().deep_progress = Some((done, total));
                Vec::new()
            }
            Event::DeepChecked { client, result } => {
                let job = self.jobs.entry(client).or_default();
                job.deep_progress = None;
                job.deep = Some(result.map(|r| *r));
                job.deep_from_memory = false;
                self.rebuild_rows();
                Vec::new()
            }
            Event::DeepRemembered(proven) => {
                for (client, report) in proven {
                    let job = self.jobs.entry(client).or_default();
                    // Newer memory replaces older; a check running here is not interrupted.
                    if job.deep_progress.is_none() && (job.deep.is_none() || job.deep_from_memory) {
                        job.deep = Some(Ok(report));
                        job.deep_from_memory = true;
                    }
                }
                self.rebuild_rows();
                Vec::new()
            }
            Event::DrillLine { client, line } => {
                let job = self.jobs.entry(client).or_default();
                job.drill_lines.push(line);
                if job.drill_lines.len() > 50 {
                    job.drill_lines.remove(0);
                }
                Vec::new()
            }
            Event::DrillFinished(record) => {
                let job = self.jobs.entry(record.client.clone()).or_default();
                job.drill_running = false;
                job.drill = Some((*record).clone());
                self.drills.push(*record);
                self.rebuild_rows();
                Vec::new()
            }
            Event::SetupPlanned(result) => {
                if let Some(screen) = &mut self.onboarding {
                    screen.planned(result);
                }
                Vec::new()
            }
            Event::SetupApplied { ok, lines } => {
                if let Some(screen) = &mut self.onboarding {
                    screen.applied(ok, lines);
                }
                // The new folders show on the dashboard at once.
                self.scanning = true;
                vec![Command::Rescan]
            }
            Event::Resize => Vec::new(),
            Event::Key(key) => self.on_key(key),
        }
    }

    /// Applies a batch of observed file changes to the catalog, then recomputes derived facts once.
    fn on_observations(&mut self, observations: Vec<Observation>) -> Vec<Command> {
        let Some(catalog) = &mut self.catalog else {
            // The first scan is still running and will see these files.
            return Vec::new();
        };
        let mut commands = Vec::new();
        for observation in &observations {
            self.events_applied += 1;
            match catalog.apply(observation) {
                Applied::Nothing => {}
                Applied::Changed { client, arrival } => {
                    let Some(arrival) = arrival else { continue };
                    if let Some(v) = &self.verification
                        && v.client == client
                        && v.wants(&arrival.name)
                        && !v.is_over(arrival.at)
                    {
                        let path = catalog
                            .client(&client)
                            .map(|c| c.wal_dir().join(&arrival.name));
                        commands.extend(path.map(|path| Command::CheckSegment {
                            path,
                            seen_at: arrival.at,
                        }));
                    }
                }
                Applied::RescanClient(name) => {
                    let command = Command::RescanClient(name);
                    if !commands.contains(&command) {
                        commands.push(command);
                    }
                }
                Applied::RescanAll(_) => {
                    if !commands.contains(&Command::Rescan) {
                        commands.push(Command::Rescan);
                    }
                }
            }
        }
        catalog.refresh();
        self.rebuild_rows();
        commands
    }

    /// Opens the verification window on a client: the base check starts at once.
    fn start_verification(&mut self, name: &str) -> Vec<Command> {
        let Some(client) = self.catalog.as_ref().and_then(|c| c.client(name)) else {
            return Vec::new();
        };
        let mut verification = Verification::new(client, self.verify_settings, self.now);
        verification.target_expected = self.config.target_for(name).is_some();
        let base_dir = client.base_dir();
        self.verification = Some(verification);
        self.screen = Screen::Verify;
        let mut commands = vec![Command::CheckBase(base_dir)];
        commands.extend(self.read_target(name, true));
        commands
    }

    /// Keys on the wizard's screen go to the wizard first: its form takes text.
    fn on_wizard_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let Some(wizard) = &mut self.wizard else {
            return Vec::new();
        };
        match wizard.on_key(key) {
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
        }
    }

    /// The client a key acts on: the detail's, else the dashboard's selection.
    fn focused_client(&self) -> Option<String> {
        match &self.screen {
            Screen::Detail { client, .. } => Some(client.clone()),
            _ => self.selected_row().map(|r| r.name.clone()),
        }
    }

    /// Keys on the new-client screen go to its form first: it takes text.
    fn on_onboarding_key(&mut self, key: KeyEvent) -> Vec<Command> {
        use crate::tui::onboarding::OnboardCommand;
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

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if self.screen == Screen::Restore && !ctrl_c {
            return self.on_wizard_key(key);
        }
        if self.screen == Screen::NewClient && !ctrl_c && !self.show_help {
            return self.on_onboarding_key(key);
        }
        if self.editing_filter {
            return self.on_filter_key(key);
        }
        if let Some(confirm) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
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
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.confirm = Some(confirm);
                    Vec::new()
                }
            };
        }
        if self.last_error.is_some() && matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
            self.last_error = None;
            return Vec::new();
        }
        let Some(action) = keymap::action_for(self.scope(), key) else {
            return Vec::new();
        };
        if self.show_help && !matches!(action, Action::ToggleHelp | Action::Quit) {
            self.show_help = false;
            if action == Action::Back {
                return Vec::new();
            }
        }
        self.apply(action)
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
            Action::PageUp => self.move_by(-(self.page as isize)),
            Action::PageDown => self.move_by(self.page as isize),
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
                let name = match &self.screen {
                    Screen::Detail { client, .. } => Some(client.clone()),
                    _ => self.selected_row().map(|r| r.name.clone()),
                };
                if let Some(name) = name {
                    return self.start_verification(&name);
                }
            }
            Action::Restore => {
                if let Some(row) = self.selected_row() {
                    self.wizard = Some(Wizard::new(&row.name));
                    self.screen = Screen::Restore;
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
                            "Restore drill of {name}: restore its base backup and archive into a scratch folder in /var/tmp, start it on a unix socket, check it answers, then remove it. The archive is only read. Run it?"
                        ),
                        commands: vec![Command::Drill(name)],
                    });
                }
            }
            Action::NewClient => {
                self.onboarding = Some(crate::tui::onboarding::Onboarding::new(
                    &self.default_backup_host,
                ));
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
        }
        Vec::new()
    }

    fn on_filter_key(&mut self, key: KeyEvent) -> Vec<Command> {
        match key.code {
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                self.editing_filter = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            // Ctrl-C is not text: it falls through to quit, as everywhere else.
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c)
            }
            _ => {
                return keymap::action_for(Scope::Dashboard, key)
                    .filter(|a| *a == Action::Quit)
                    .map_or_else(Vec::new, |a| self.apply(a));
            }
        }
        self.rebuild_rows();
        Vec::new()
    }

    fn move_by(&mut self, delta: isize) {
        match &mut self.screen {
            Screen::Dashboard => {
                let last = self.rows.len().saturating_sub(1) as isize;
                self.selected = (self.selected as isize)
                    .saturating_add(delta)
                    .clamp(0, last.max(0)) as usize;
            }
            Screen::Detail { scroll, .. } => {
                *scroll = (*scroll as isize)
                    .saturating_add(delta)
                    .clamp(0, self.detail_max_scroll as isize) as u16;
            }
            Screen::Verify | Screen::Restore | Screen::NewClient => {}
        }
    }

    /// Recomputes health (ages move with the clock), then filters and sorts, keeping the selection on its client.
    fn rebuild_rows(&mut self) {
        let Some(catalog) = &self.catalog else { return };
        let keep = self.selected_row().map(|r| r.name.clone());
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<ClientReport> = catalog
            .clients
            .iter()
            .map(|c| {
                let mut report = ClientReport::build(c, &self.config, self.now);
                if let Some(view) = self.targets.get(&c.name).and_then(|t| t.view.clone()) {
                    report.add_target(view, &c.path);
                }
                if let Some(Ok(deep)) = self.jobs.get(&c.name).and_then(|j| j.deep.clone()) {
                    report.add_deep(deep);
                }
                if let Some(problems) = self.quick_problems.get(&c.name) {
                    report.problems.extend(problems.iter().cloned());
                    report.status = crate::checks::health::status_of(&report.problems);
                }
                report
            })
            .filter(|r| needle.is_empty() || matches_filter(r, &needle))
            .collect();
        self.total_clients = catalog.clients.len();
        rows.sort_by(|a, b| {
            let order = match self.sort {
                SortKey::Status => b.status.cmp(&a.status).then_with(|| a.name.cmp(&b.name)),
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::LastArrival => a.wal.last_arrival.cmp(&b.wal.last_arrival),
                SortKey::RestorableTo => a.restorable_to.cmp(&b.restorable_to),
            };
            if self.sort_reversed {
                order.reverse()
            } else {
                order
            }
        });
        self.rows = rows;
        self.selected = keep
            .and_then(|name| self.rows.iter().position(|r| r.name == name))
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
    }
}

fn matches_filter(report: &ClientReport, needle: &str) -> bool {
    let status = format!("{:?}", report.status).to_lowercase();
    report.name.to_lowercase().contains(needle)
        || status.starts_with(needle)
        || report.status.label().to_lowercase().starts_with(needle)
        || report
            .problems
            .iter()
            .any(|p| p.code.as_str().contains(needle))
}
