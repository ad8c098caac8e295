//! The dashboard's side effects, run on tokio's blocking pool: each
//! `Command` from `App::update` becomes a job whose body is a core function
//! (the scan, the checks' jobs, the drill, setup, a target read, an
//! integrity check, the restore engine), its results sent back as events.
//!
//! Jobs are single-flight per kind and client: a rescan asked for while one
//! runs runs once more after it, however many requests came in between;
//! any other repeat is dropped while its job runs. A job that panics is
//! reported as `Event::JobFailed`, so no screen waits for it forever.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::Message;
use super::app::{Command, Event};
use super::onboarding::SetupText;
use super::wizard::RestoreEvent;
use crate::archive::catalog::{self, ScanOptions};
use crate::checks::integrity::{check_base_backup, check_segment};
// What the engine says quotes names from the archive: data, shown escaped.
use crate::checks::jobs;
use crate::checks::quick::QuickInput;
use crate::display::escape_text;
use crate::ops::drill::{self, DrillRequest};
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::{self, Driver, StepKind};
use crate::ops::setup::{self, ArchiveRoute, PublicKey, SetupRequest, SetupStep};

/// One kind of background work for one client (or for the whole root):
/// at most one of each runs at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum JobKey {
    Scan,
    ClientScan(String),
    DeepCheck(String),
    Drill(String),
    Target(String),
    Setup,
    Restore,
    /// The settings a restore of this client needs here (the wizard's field).
    Proposals(String),
    BaseCheck(PathBuf),
    SegmentCheck(PathBuf),
}

impl JobKey {
    /// The job a command starts; `None` for commands that are not jobs.
    fn of(command: &Command) -> Option<JobKey> {
        Some(match command {
            Command::Rescan => JobKey::Scan,
            Command::RescanClient(name) => JobKey::ClientScan(name.clone()),
            Command::DeepCheck(name) => JobKey::DeepCheck(name.clone()),
            Command::Drill(name) => JobKey::Drill(name.clone()),
            Command::ReadTarget { client, .. } => JobKey::Target(client.clone()),
            Command::PlanSetup(_) | Command::ApplySetup(..) => JobKey::Setup,
            Command::StartRestore { .. } => JobKey::Restore,
            Command::ProposeSettings { client, .. } => JobKey::Proposals(client.clone()),
            Command::CheckBase(dir) => JobKey::BaseCheck(dir.clone()),
            Command::CheckSegment { path, .. } => JobKey::SegmentCheck(path.clone()),
            Command::AnswerRestore(_) | Command::Quit => return None,
        })
    }

    /// Rescans asked for while one runs still matter: the folder changed
    /// again; so do proposals asked for another data directory.
    fn runs_again(&self) -> bool {
        matches!(
            self,
            JobKey::Scan | JobKey::ClientScan(_) | JobKey::Proposals(_)
        )
    }
}

/// What a job's body can do: send events, and say early that its result is
/// delivered (what follows is housekeeping another job of its kind may overlap).
struct Job {
    tx: mpsc::UnboundedSender<Message>,
    key: JobKey,
    done: Cell<bool>,
}

impl Job {
    fn send(&self, event: Event) {
        let _ = self.tx.send(Message::App(event));
    }

    fn done(&self) {
        if !self.done.replace(true) {
            let _ = self.tx.send(Message::JobDone(self.key.clone()));
        }
    }
}

/// Runs the app's side effects in the background; results come back as events.
pub(super) struct Jobs {
    root: PathBuf,
    cache: Option<PathBuf>,
    tx: mpsc::UnboundedSender<Message>,
    running: HashSet<JobKey>,
    /// Rescans asked for while one of their kind ran: started once it ends.
    again: HashMap<JobKey, Command>,
    /// The first scan skips full decompressions so the dashboard fills at
    /// once; a full one follows it.
    first_scan_done: bool,
    /// Where the engineer's answers go while a restore waits for one.
    restore_answers: Option<std::sync::mpsc::Sender<bool>>,
}

impl Jobs {
    pub(super) fn new(
        root: PathBuf,
        cache: Option<PathBuf>,
        tx: mpsc::UnboundedSender<Message>,
    ) -> Jobs {
        Jobs {
            root,
            cache,
            tx,
            running: HashSet::new(),
            again: HashMap::new(),
            first_scan_done: false,
            restore_answers: None,
        }
    }

    /// Starts each command; true when one of them is Quit.
    pub(super) fn run(&mut self, commands: Vec<Command>) -> bool {
        for command in commands {
            match command {
                Command::Quit => return true,
                Command::AnswerRestore(yes) => {
                    if let Some(answers) = &self.restore_answers {
                        let _ = answers.send(yes);
                    }
                }
                command => self.start(command),
            }
        }
        false
    }

    /// A job delivered: its slot is free, and a rescan asked for meanwhile starts.
    pub(super) fn finished(&mut self, key: JobKey) {
        self.running.remove(&key);
        if key == JobKey::Scan && !self.first_scan_done {
            self.first_scan_done = true;
            self.again.insert(JobKey::Scan, Command::Rescan);
        }
        if let Some(command) = self.again.remove(&key) {
            self.start(command);
        }
    }

    fn start(&mut self, command: Command) {
        let Some(key) = JobKey::of(&command) else {
            return;
        };
        if self.running.contains(&key) {
            if key.runs_again() {
                self.again.insert(key, command);
            }
            return;
        }
        self.running.insert(key.clone());
        let root = self.root.clone();
        let cache = self.cache.clone();
        match command.clone() {
            Command::Rescan => {
                let options = ScanOptions {
                    cache,
                    compute_full_facts: self.first_scan_done,
                    only: Vec::new(),
                };
                self.spawn(key, command, move |job| scan_root(&root, &options, job));
            }
            Command::RescanClient(name) => {
                let options = ScanOptions {
                    cache,
                    ..ScanOptions::default()
                };
                self.spawn(key, command, move |job| {
                    scan_one_client(&root, &name, &options, job)
                });
            }
            Command::StartRestore { client, request } => {
                let (answer_tx, answers) = std::sync::mpsc::channel();
                self.restore_answers = Some(answer_tx);
                self.spawn(key, command, move |job| {
                    let send = |event: RestoreEvent| job.send(Event::Restore(event));
                    let result = catalog::scan_client(&root, &client, &ScanOptions::default())
                        .map_err(|e| e.to_string())
                        .and_then(|client| {
                            let mut driver = WizardDriver {
                                send: &send,
                                answers,
                            };
                            steps::run(&client, &request, &mut driver)
                                .map(Box::new)
                                .map_err(|e| e.to_string())
                        });
                    send(RestoreEvent::Finished(result));
                });
            }
            Command::ProposeSettings {
                client,
                data_dir,
                request,
            } => {
                self.spawn(key, command, move |job| {
                    // The first read of a big base.tar.gz takes a while; the
                    // preflight of the run that follows reuses it.
                    let result = catalog::scan_client(&root, &client, &ScanOptions::default())
                        .map_err(|e| e.to_string())
                        .and_then(|scanned| {
                            crate::ops::restore::proposed_settings(&scanned, &request)
                                .map_err(|e| e.to_string())
                        });
                    job.send(Event::SettingsProposed {
                        client,
                        data_dir,
                        result,
                    });
                });
            }
            Command::ReadTarget { client, target } => {
                self.spawn(key, command, move |job| {
                    let view = crate::pg::target::view(&target);
                    job.send(Event::TargetRead { client, view });
                });
            }
            Command::DeepCheck(name) => {
                self.spawn(key, command, move |job| {
                    let mut last_sent = Instant::now();
                    let result = jobs::deep_check_client(
                        &root,
                        &name,
                        SystemTime::now(),
                        &mut |done, total| {
                            // A few updates a second are enough for a gauge.
                            if done == total || last_sent.elapsed() >= Duration::from_millis(200) {
                                last_sent = Instant::now();
                                job.send(Event::DeepProgress {
                                    client: name.clone(),
                                    done,
                                    total,
                                });
                            }
                        },
                    )
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                    job.send(Event::DeepChecked {
                        client: name,
                        result,
                    });
                });
            }
            Command::Drill(name) => {
                self.spawn(key, command, move |job| {
                    job.send(Event::DrillFinished(Box::new(run_drill(&root, &name, job))));
                });
            }
            Command::PlanSetup(text) => {
                self.spawn(key, command, move |job| {
                    job.send(Event::SetupPlanned(plan_setup(&root, &text)));
                });
            }
            Command::ApplySetup(text, actions) => {
                self.spawn(key, command, move |job| {
                    let (ok, lines) = apply_setup(&root, &text, &actions);
                    job.send(Event::SetupApplied { ok, lines });
                });
            }
            Command::CheckBase(base_dir) => {
                self.spawn(key, command, move |job| {
                    let check = check_base_backup(&base_dir, &mut |p| {
                        job.send(Event::BaseCheckProgress(p))
                    });
                    job.send(Event::BaseChecked(check));
                });
            }
            Command::CheckSegment { path, seen_at } => {
                self.spawn(key, command, move |job| {
                    job.send(Event::SegmentChecked {
                        seen_at,
                        check: check_segment(&path),
                    });
                });
            }
            Command::AnswerRestore(_) | Command::Quit => {}
        }
    }

    /// Runs `body` on the blocking pool; a panic in it becomes `JobFailed`.
    fn spawn(&self, key: JobKey, command: Command, body: impl FnOnce(&Job) + Send + 'static) {
        let job = Job {
            tx: self.tx.clone(),
            key,
            done: Cell::new(false),
        };
        tokio::task::spawn_blocking(move || {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| body(&job))) {
                job.send(Event::JobFailed {
                    job: command,
                    message: crate::pool::panic_message(payload),
                });
            }
            job.done();
        });
    }
}

/// The whole root: the catalog at once, then what earlier deep checks
/// proved, the drill history, and (after the slot is free) the quick check.
fn scan_root(root: &Path, options: &ScanOptions, job: &Job) {
    let result = catalog::scan(root, options);
    let proven = result
        .as_ref()
        .map_or_else(|_| Vec::new(), jobs::deep_from_memory);
    // Copied out so the dashboard gets the catalog at once; the quick
    // check follows (the first one of a big archive takes minutes).
    let quick: Vec<QuickInput> = result
        .as_ref()
        .map(|c| c.clients.iter().map(QuickInput::owned).collect())
        .unwrap_or_default();
    job.send(Event::Scanned(result));
    if !proven.is_empty() {
        job.send(Event::DeepRemembered(proven));
    }
    let history = crate::checks::drills::default_history_path()
        .map(|p| crate::checks::drills::load_history(&p))
        .unwrap_or_default();
    job.send(Event::Drills(history));
    job.done();
    if !quick.is_empty() {
        // Failing to remember costs only a re-read next time.
        job.send(Event::QuickChecked(jobs::quick_check(&quick).findings));
    }
}

/// One client re-read, then its quick check.
fn scan_one_client(root: &Path, name: &str, options: &ScanOptions, job: &Job) {
    let result = catalog::scan_client(root, name, options)
        .map(Box::new)
        .map_err(|e| e.to_string());
    let quick = result
        .as_ref()
        .ok()
        .map(|client| vec![QuickInput::owned(client)]);
    job.send(Event::ClientScanned {
        name: name.to_owned(),
        result,
    });
    job.done();
    if let Some(inputs) = quick {
        job.send(Event::QuickChecked(jobs::quick_check(&inputs).findings));
    }
}

/// The engine's face in the TUI: reports become events; a question waits
/// for the engineer's answer from the wizard screen.
struct WizardDriver<'a> {
    send: &'a dyn Fn(RestoreEvent),
    answers: std::sync::mpsc::Receiver<bool>,
}

impl Driver for WizardDriver<'_> {
    fn confirm(&mut self, question: &str) -> bool {
        (self.send)(RestoreEvent::Ask(escape_text(question)));
        // A closed screen (the app quit) is a no: nothing destructive without an answer.
        self.answers.recv().unwrap_or(false)
    }

    fn confirm_typed(&mut self, _prompt: &str, _expected: &str) -> bool {
        // The wizard never purges; moving aside is its only way to clear.
        false
    }

    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        (self.send)(RestoreEvent::Step(step, outcome, escape_text(detail)));
    }

    fn command(&mut self, text: &str) {
        (self.send)(RestoreEvent::Command(escape_text(text)));
    }

    fn progress(&mut self, step: StepKind, text: &str) {
        (self.send)(RestoreEvent::Progress(step, escape_text(text)));
    }

    fn replay_progress(&mut self, progress: &crate::ops::walget::progress::ReplayProgress) {
        (self.send)(RestoreEvent::Replay(progress.clone()));
    }

    fn gauge(&mut self, step: StepKind, ratio: f64, label: &str) {
        (self.send)(RestoreEvent::Gauge(step, ratio, label.to_owned()));
    }
}

/// The drill engine's reports as lines on the detail screen; a drill only
/// writes in its scratch folder, so it confirms its own steps.
struct DrillLines<'a> {
    client: String,
    job: &'a Job,
}

impl DrillLines<'_> {
    fn say(&self, line: String) {
        self.job.send(Event::DrillLine {
            client: self.client.clone(),
            line,
        });
    }
}

impl Driver for DrillLines<'_> {
    fn confirm(&mut self, _question: &str) -> bool {
        true
    }
    fn confirm_typed(&mut self, _prompt: &str, _expected: &str) -> bool {
        false
    }
    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        self.say(format!(
            "{} — {outcome:?}: {}",
            step.title(),
            escape_text(detail)
        ));
    }
    fn command(&mut self, text: &str) {
        self.say(format!("$ {}", escape_text(text)));
    }
    fn progress(&mut self, _step: StepKind, text: &str) {
        self.say(escape_text(text));
    }
}

/// A restore drill with `walwarden drill`'s defaults, recorded in the history.
fn run_drill(root: &Path, name: &str, job: &Job) -> crate::checks::drills::DrillRecord {
    let mut driver = DrillLines {
        client: name.to_owned(),
        job,
    };
    let history = crate::checks::drills::default_history_path();
    match drill::drill_client(
        root,
        name,
        &DrillRequest::default(),
        history.as_deref(),
        &mut driver,
    ) {
        Ok(drilled) => {
            let mut record = drilled.record;
            if let Some((path, error)) = drilled.not_recorded {
                record
                    .detail
                    .push_str(&format!(" (not recorded in {}: {error})", path.display()));
            }
            record
        }
        Err(error) => crate::checks::drills::DrillRecord::failed(
            name,
            format!("cannot read the client: {error}"),
        ),
    }
}

/// The form's request: the client, the user's home when one is typed, and
/// the target's key when a file is named.
fn setup_request(root: &Path, text: &SetupText) -> Result<SetupRequest, String> {
    let mut request = SetupRequest::new(root, text.client.trim()).map_err(|e| e.to_string())?;
    let home = text.home.trim();
    if !home.is_empty() {
        if !home.starts_with('/') {
            return Err(format!("the home {home:?} must be an absolute path"));
        }
        request.home = PathBuf::from(home);
    }
    Ok(request)
}

/// The new-client screen's plan: what `walwarden setup --dry-run` shows.
fn plan_setup(root: &Path, text: &SetupText) -> Result<setup::SetupPlan, String> {
    let mut request = setup_request(root, text)?;
    let key_file = text.key_file.trim();
    if !key_file.is_empty() {
        request.public_key = Some(PublicKey::read(Path::new(key_file)).map_err(|e| e.to_string())?);
    }
    let host = Some(text.backup_host.trim())
        .filter(|h| !h.is_empty())
        .map_or_else(setup::this_host, str::to_owned);
    let route = ArchiveRoute::for_request(&request, &host);
    setup::plan_setup(&request, &route, setup::DEFAULT_TARGET_SCRATCH).map_err(|e| e.to_string())
}

/// Runs the reviewed plan, then the copy test as the client's user; each
/// step as a line, as `walwarden setup` prints them.
fn apply_setup(root: &Path, text: &SetupText, actions: &[setup::Action]) -> (bool, Vec<String>) {
    let request = match setup_request(root, text) {
        Ok(request) => request,
        Err(error) => return (false, vec![error]),
    };
    let mut lines = Vec::new();
    let mut failing: Option<String> = None;
    let result = setup::apply_setup(&request, actions, &mut |step| match step {
        SetupStep::Applying(action) => failing = Some(format!("FAILED: {action}: ")),
        SetupStep::Applied(action) => {
            failing = None;
            lines.push(format!("done: {action}"));
        }
        SetupStep::CopyTesting(_) => failing = Some("FAILED: ".into()),
        SetupStep::CopyTested(dir) => {
            failing = None;
            lines.push(format!(
                "ok: the copy test as {} wrote, read back and removed a file in {}",
                request.user,
                dir.display()
            ));
        }
    });
    match result {
        Ok(()) => (true, lines),
        Err(error) => {
            lines.push(format!("{}{error}", failing.unwrap_or_default()));
            (false, lines)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rescan_asked_while_one_runs_runs_once_more_and_a_repeated_check_is_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let root = tempfile::tempdir().unwrap();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut jobs = Jobs::new(root.path().to_owned(), None, tx);
            jobs.first_scan_done = true;
            jobs.run(vec![Command::Rescan, Command::Rescan, Command::Rescan]);
            jobs.run(vec![
                Command::DeepCheck("acme".into()),
                Command::DeepCheck("acme".into()),
            ]);
            assert_eq!(
                jobs.running,
                HashSet::from([JobKey::Scan, JobKey::DeepCheck("acme".into())])
            );
            assert_eq!(
                jobs.again.keys().collect::<Vec<_>>(),
                vec![&JobKey::Scan],
                "three rescans are one running and one queued; the second deep check is dropped"
            );
            let mut scans = 0;
            loop {
                match rx.recv().await {
                    Some(Message::App(Event::Scanned(_))) => scans += 1,
                    Some(Message::JobDone(JobKey::Scan)) => break,
                    Some(_) => {}
                    None => panic!("the scan never finished"),
                }
            }
            assert_eq!(scans, 1);
            jobs.finished(JobKey::Scan);
            assert!(
                jobs.running.contains(&JobKey::Scan),
                "the queued rescan runs"
            );
            assert!(jobs.again.is_empty());
        });
    }
}
