//! The dashboard's state and its update function (The Elm Architecture):
//! `update` takes an event, changes the state, and returns the side effects
//! for the loop to run. It does no I/O: file changes arrive already observed
//! (stat, label, header), the screen's size arrives as a `Viewport`, and the
//! view only reads the state. So the whole UI is testable headless.
//!
//! - `input`: keys resolved through the key table into actions;
//! - `rows`: each client's report assembled (the core's one assembly) and
//!   the dashboard's rows filtered and sorted;
//! - `background`: what background work is running or was found, per client
//!   (deep checks, drills, target reads, the verification window's checks).

mod background;
mod input;
mod rows;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::SystemTime;

use crossterm::event::{KeyEvent, MouseEvent};

pub use background::{ClientJobs, Confirm, TargetEntry};
pub use rows::SortKey;

use crate::archive::catalog::{Catalog, CatalogError, Client, Observation};
use crate::archive::watch::WatchMode;
use crate::checks::deep::DeepReport;
use crate::checks::drills::DrillRecord;
use crate::checks::integrity::{BaseCheck, Progress, SegmentCheck};
use crate::checks::report::ClientReport;
use crate::checks::verify::{Verification, VerifySettings};
use crate::config::{Config, TargetServer};
use crate::ops::restore::SettingsProposal;
use crate::ops::restore::request::RestoreRequest;
use crate::ops::setup::{Action as SetupAction, SetupPlan};
use crate::pg::target::TargetView;
use crate::tui::keymap::Scope;
use crate::tui::onboarding::{Onboarding, SetupText};
use crate::tui::wizard::{RestoreEvent, Wizard};

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    /// A click or a wheel turn, stamped by the loop (a double click is two
    /// clicks on one row close together).
    Mouse {
        event: MouseEvent,
        at: SystemTime,
    },
    /// The clock moved: ages go stale without file events.
    Tick(SystemTime),
    /// A background scan of the whole root finished (`Err`: the root is
    /// missing or unreadable, said on screen with its fix).
    Scanned(Result<Catalog, CatalogError>),
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
    /// What the terminal's size allows, measured by the view.
    Viewport(Viewport),
    /// The restore engine reported something.
    Restore(RestoreEvent),
    /// The settings a restore of `client` into `data_dir` (as the wizard
    /// typed it) needs on this host, or why they could not be worked out.
    SettingsProposed {
        client: String,
        data_dir: String,
        result: Result<SettingsProposal, String>,
    },
    /// The recorded restore drills.
    Drills(Vec<DrillRecord>),
    /// The quick check of segments (gzip trailer, first page) after a scan:
    /// each client's problems, replacing what an earlier check said of it.
    QuickChecked(Vec<(String, crate::checks::quick::QuickFindings)>),
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
        result: Result<Box<DeepReport>, String>,
    },
    /// How far earlier deep checks proved each client, from their cache.
    DeepRemembered(Vec<(String, DeepReport)>),
    /// A restore drill said what it is doing.
    DrillLine {
        client: String,
        line: String,
    },
    /// A restore drill finished and was recorded.
    DrillFinished(Box<DrillRecord>),
    /// The new-client screen's plan, or why there is none.
    SetupPlanned(Result<SetupPlan, String>),
    /// The new-client screen's plan ran (each action's result, the copy test).
    SetupApplied {
        ok: bool,
        lines: Vec<String>,
    },
    /// The target server's side of a client, read over SSH.
    TargetRead {
        client: String,
        view: TargetView,
    },
    /// A background job failed unexpectedly (a panic: a bug, reported
    /// instead of leaving its screen waiting forever).
    JobFailed {
        job: Command,
        message: String,
    },
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
    /// Work out the settings a restore of this client needs on this host
    /// (the wizard's pre-filled field), for the data directory as typed.
    ProposeSettings {
        client: String,
        data_dir: String,
        request: Box<RestoreRequest>,
    },
    /// Re-read this client and run the restore engine on it in the background.
    StartRestore {
        client: String,
        request: Box<RestoreRequest>,
    },
    /// The engineer's answer to the engine's pending question.
    AnswerRestore(bool),
    /// Read every file of a client to its end (results remembered per file).
    DeepCheck(String),
    /// Restore a client into a scratch directory, check it answers, remove it, record it.
    Drill(String),
    /// Work out what onboarding this client would change (reads the machine).
    PlanSetup(SetupText),
    /// Onboard it: the reviewed actions, then the copy test.
    ApplySetup(SetupText, Vec<SetupAction>),
    /// Read a client's target server over SSH in the background.
    ReadTarget {
        client: String,
        target: Box<TargetServer>,
    },
    Quit,
}

/// A full scan that could not read the root, as both faces word it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFailure {
    pub message: String,
    pub hint: String,
}

/// What the terminal's size allows, as the view measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// Lines a page scroll moves.
    pub page: usize,
    /// The last detail scroll that still shows content.
    pub detail_max_scroll: u16,
    /// The screen line of the dashboard's first client row (a click there
    /// selects the row at `list_offset`).
    pub list_top: u16,
    /// How many client rows the dashboard shows at once.
    pub list_rows: u16,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport {
            page: 10,
            detail_max_scroll: u16::MAX,
            list_top: 0,
            list_rows: u16::MAX,
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
    pub root: PathBuf,
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
    /// The first client row shown: follows the selection so it stays in
    /// view, and tells which client a click lands on.
    pub list_offset: usize,
    /// The last click on a client row (its index and when), for a double click.
    pub last_click: Option<(usize, SystemTime)>,
    pub scanning: bool,
    /// Why the last full scan failed (the root missing, unreadable), with
    /// the core's fix: the same words `walwarden check` prints.
    pub scan_failure: Option<ScanFailure>,
    pub last_error: Option<String>,
    /// What the screen's size allows; set by `Event::Viewport`.
    pub viewport: Viewport,
    pub quit: bool,
    /// False when NO_COLOR is set: status is then told by text alone.
    pub color: bool,
    /// How file events reach the catalog; `Err` when the watcher failed.
    pub watching: Option<Result<WatchMode, String>>,
    /// Changes applied since the start, for the header.
    pub events_applied: u64,
    pub verification: Option<Verification>,
    pub verify_settings: VerifySettings,
    pub wizard: Option<Wizard>,
    pub onboarding: Option<Onboarding>,
    /// Restore drills recorded on this machine.
    pub drills: Vec<DrillRecord>,
    /// Deep checks and drills started from the dashboard, per client.
    pub jobs: BTreeMap<String, ClientJobs>,
    /// A question that must be answered y or n before `commands` run.
    pub confirm: Option<Confirm>,
    /// The new-client form's backup host; empty shows as "this host's name".
    pub default_backup_host: String,
    /// What each client's target server showed, when it was read.
    pub targets: BTreeMap<String, TargetEntry>,
    /// What the quick check of segments found, by client.
    pub quick_findings: HashMap<String, crate::checks::quick::QuickFindings>,
    /// Clients whose folder a re-read found gone since the last full scan
    /// arrived: a full scan that listed them before they went must not
    /// bring them back (it is checked again instead).
    pub gone_since_scan: std::collections::BTreeSet<String>,
}

impl App {
    pub fn new(root: PathBuf, config: Config, now: SystemTime) -> App {
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
            list_offset: 0,
            last_click: None,
            scanning: true,
            scan_failure: None,
            last_error: None,
            viewport: Viewport::default(),
            quit: false,
            color: true,
            watching: None,
            events_applied: 0,
            verification: None,
            verify_settings: VerifySettings::default(),
            wizard: None,
            onboarding: None,
            default_backup_host: String::new(),
            jobs: BTreeMap::new(),
            confirm: None,
            drills: Vec::new(),
            targets: BTreeMap::new(),
            quick_findings: HashMap::new(),
            gone_since_scan: std::collections::BTreeSet::new(),
        }
    }

    /// The screen's scope in the key table.
    pub fn scope(&self) -> Scope {
        match self.screen {
            Screen::Dashboard => Scope::Dashboard,
            Screen::Detail { .. } => Scope::Detail,
            Screen::Verify => Scope::Verify,
            Screen::Restore => Scope::Restore,
            Screen::NewClient => Scope::NewClient,
        }
    }

    /// The scope that holds the keys (and the mouse) now: the topmost
    /// overlay, in the order they are drawn (the error popup over a
    /// question over the help), else the filter being typed, else the
    /// screen's own (a wizard's form or question included). Keys are looked
    /// up in this scope alone and go nowhere else, so nothing leaks through
    /// to the screen underneath; the footer shows this scope's hints.
    pub fn key_scope(&self) -> Scope {
        if self.last_error.is_some() {
            return Scope::Error;
        }
        if self.confirm.is_some() {
            return Scope::Confirm;
        }
        if self.show_help {
            return Scope::Help;
        }
        if self.editing_filter {
            return Scope::Filter;
        }
        match (&self.screen, &self.wizard, &self.onboarding) {
            (Screen::Restore, Some(wizard), _) => wizard.scope(),
            (Screen::NewClient, _, Some(screen)) => screen.scope(),
            _ => self.scope(),
        }
    }

    /// The newest successful drill of a client, if any was recorded.
    pub fn last_drill(&self, client: &str) -> Option<&DrillRecord> {
        crate::checks::drills::last_success(&self.drills, client)
    }

    pub fn selected_row(&self) -> Option<&ClientReport> {
        self.rows.get(self.selected)
    }

    /// The client a detail screen shows, from the current reports.
    pub fn detail_client(&self) -> Option<(&ClientReport, &Client)> {
        let Screen::Detail { client, .. } = &self.screen else {
            return None;
        };
        let report = self.rows.iter().find(|r| &r.name == client)?;
        let scanned = self.catalog.as_ref()?.client(client)?;
        Some((report, scanned))
    }

    pub fn update(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Key(key) => self.on_key(key),
            Event::Mouse { event, at } => self.on_mouse(event, at),
            Event::Tick(now) => {
                self.now = now;
                self.rebuild_rows();
                self.verification_target_reads()
            }
            Event::Viewport(viewport) => {
                self.viewport = viewport;
                if let Screen::Detail { scroll, .. } = &mut self.screen {
                    *scroll = (*scroll).min(viewport.detail_max_scroll);
                }
                self.follow_selection();
                Vec::new()
            }
            Event::Scanned(Ok(mut catalog)) => {
                self.scanning = false;
                self.scan_failure = None;
                // Keep what the watcher saw live: a rescan only knows mtimes.
                if let Some(old) = &self.catalog {
                    catalog.keep_live_arrivals_from(old);
                }
                // A full scan lists the root once, then reads each client: a
                // folder deleted meanwhile may still be in it. Those a newer
                // re-read found gone stay gone, and are read once more.
                let mut commands = Vec::new();
                for name in std::mem::take(&mut self.gone_since_scan) {
                    if catalog.client(&name).is_some() {
                        catalog.remove_client(&name);
                        commands.push(Command::RescanClient(name));
                    }
                }
                self.catalog = Some(catalog);
                self.rebuild_rows();
                commands.extend(self.verification_missed_segments());
                commands
            }
            Event::Scanned(Err(error)) => {
                self.scanning = false;
                self.scan_failure = Some(ScanFailure {
                    message: error.to_string(),
                    hint: error.hint(),
                });
                Vec::new()
            }
            Event::ClientScanned { name, result } => {
                match result {
                    Ok(client) => {
                        self.gone_since_scan.remove(&name);
                        if let Some(catalog) = &mut self.catalog {
                            catalog.replace_client(*client);
                        }
                    }
                    Err(_) => {
                        if let Some(catalog) = &mut self.catalog {
                            catalog.remove_client(&name);
                        }
                        self.gone_since_scan.insert(name);
                    }
                }
                self.rebuild_rows();
                self.verification_missed_segments()
            }
            Event::Observed(observations) => self.on_observations(observations),
            Event::Watching(mode) => {
                self.watching = Some(mode);
                Vec::new()
            }
            Event::Drills(history) => {
                self.drills = history;
                self.rebuild_rows();
                Vec::new()
            }
            Event::QuickChecked(results) => {
                self.quick_findings.extend(results);
                self.rebuild_rows();
                Vec::new()
            }
            Event::Restore(event) => {
                if let Some(wizard) = &mut self.wizard {
                    wizard.on_event(event);
                }
                Vec::new()
            }
            Event::SettingsProposed {
                client,
                data_dir,
                result,
            } => {
                let Some(wizard) = self.wizard.as_mut().filter(|w| w.client == client) else {
                    return Vec::new();
                };
                let result = result.map(|proposal| {
                    let reasons = proposal
                        .findings
                        .iter()
                        .map(|m| format!("{}: {}", m.key, m.why))
                        .collect();
                    (proposal.settings, reasons)
                });
                let command = wizard.proposed(&data_dir, result);
                self.wizard_commands(command)
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
            Event::TargetRead { client, view } => self.on_target_read(client, view),
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
            Event::JobFailed { job, message } => {
                self.job_failed(&job);
                self.last_error = Some(format!("{message} (please report this bug)"));
                Vec::new()
            }
        }
    }
}
