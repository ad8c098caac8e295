//! The restore's steps, run in order by `run`. Every step journals what it
//! did; destructive ones (stopping a server, clearing the data directory)
//! ask the driver first, and a refusal leaves everything as it was.
//!
//! This module holds the runner (order, timing, journal, resume) and the
//! `Driver` a face implements; the steps themselves are in `preflight`,
//! `remote_stop`, `prepare` (stop, clear, unpack, recovery config) and
//! `server` (start, follow the log, report); `helper` ends the restored
//! server's `walwarden wal-get` once the restore is over, whichever way.
//!
//! Ctrl-C (the driver's `interrupted`) while the restored server runs stops
//! that server with a fast shutdown (replay goes on from its last
//! restartpoint on `--resume`), ends the helper and fails the restore as
//! interrupted: nothing of the restore is left running, and `--rollback`
//! or `--resume` can follow at once.

mod helper;
mod line;
mod preflight;
mod prepare;
mod remote_stop;
mod resume;
mod server;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub use preflight::{SettingsProposal, proposed_settings};
pub use remote_stop::stop_old_instance;
use resume::Resumed;

use super::error::{PreflightRefusal, RestoreError, StepFailure};
use super::journal::{Journal, JournaledRequest, Outcome};
use super::recovery_conf::ArchiveLayout;
use super::replay::ReplayOutcome;
use super::request::RestoreRequest;
use super::service::{ServiceControl, postmaster_alive};
use crate::archive::catalog::Client;
use crate::ops::phases::{Phase, PhaseClock, PhaseTimes};
use crate::ops::walget::WalGetPlan;
use crate::ops::walget::progress::{ReplayProgress, ReplayStats};
use crate::pg::local::{self, PgUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Preflight,
    StopRemote,
    StopLocal,
    Clear,
    Unpack,
    RecoveryConfig,
    Start,
    FollowLog,
    Report,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        StepKind::Preflight,
        StepKind::StopRemote,
        StepKind::StopLocal,
        StepKind::Clear,
        StepKind::Unpack,
        StepKind::RecoveryConfig,
        StepKind::Start,
        StepKind::FollowLog,
        StepKind::Report,
    ];

    pub fn id(self) -> &'static str {
        match self {
            StepKind::Preflight => "preflight",
            StepKind::StopRemote => "stop-remote",
            StepKind::StopLocal => "stop-local",
            StepKind::Clear => "clear",
            StepKind::Unpack => "unpack",
            StepKind::RecoveryConfig => "recovery-config",
            StepKind::Start => "start",
            StepKind::FollowLog => "follow-log",
            StepKind::Report => "report",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            StepKind::Preflight => "check everything before touching anything",
            StepKind::StopRemote => "stop the old instance on the target server",
            StepKind::StopLocal => "stop the local instance",
            StepKind::Clear => "clear the data directory",
            StepKind::Unpack => "unpack base.tar.gz and pg_wal.tar.gz",
            StepKind::RecoveryConfig => "write the recovery configuration",
            StepKind::Start => "start PostgreSQL",
            StepKind::FollowLog => "follow the log while WAL replays",
            StepKind::Report => "verify and report",
        }
    }
}

/// The face that runs the engine: asks questions and shows what happens.
pub trait Driver {
    /// A yes/no before a destructive action; `false` cancels safely.
    fn confirm(&mut self, question: &str) -> bool;
    /// The answer must equal `expected` exactly (used before deleting data).
    fn confirm_typed(&mut self, prompt: &str, expected: &str) -> bool;
    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str);
    /// A command about to run (or that would run, in a dry run), as a person could type it.
    fn command(&mut self, text: &str);
    /// Progress or a log line within a step.
    fn progress(&mut self, step: StepKind, text: &str);
    /// How far a long step is (0.0 to 1.0), for a gauge; faces without one ignore it.
    fn gauge(&mut self, _step: StepKind, _ratio: f64, _label: &str) {}
    /// The replay's progress from the helper's request log, about once a
    /// second while the follow-log step runs (read off the face's thread).
    fn replay_progress(&mut self, _progress: &ReplayProgress) {}
    /// Whether the engineer asked to stop (Ctrl-C); read while the restored
    /// server replays. Faces that cannot interrupt say no.
    fn interrupted(&mut self) -> bool {
        false
    }
}

/// What a finished (or stopped) restore reports.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub journal: PathBuf,
    pub moved_aside_to: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub replay: Option<ReplayOutcome>,
    pub in_recovery: Option<bool>,
    /// RFC 3339 in UTC, to the microsecond.
    pub last_replayed_transaction: Option<String>,
    /// The furthest segment replay reached.
    pub reached_segment: Option<String>,
    /// The last commit the line holds (RFC 3339, UTC, microseconds), when known.
    pub archive_last_commit: Option<String>,
    pub step_times: Vec<(StepKind, Duration)>,
    /// Preflight, unpack, replay (WAL bytes and rate, from the helper's
    /// request log) and start until accepting writes.
    pub phases: PhaseTimes,
    /// The helper's totals, when it was finished (or read, when left running).
    pub replay_stats: Option<ReplayStats>,
    /// Why the helper was left in place (a server still recovering), or
    /// what could not be cleaned up after it.
    pub helper_note: Option<String>,
}

/// Facts the preflight established for the steps after it.
struct Checked {
    user: PgUser,
    pg_bin: PathBuf,
    major: u32,
    base_tar: PathBuf,
    pg_wal_tar: PathBuf,
    layout: ArchiveLayout,
    archive_last: Option<String>,
    log: PathBuf,
    service: ServiceControl,
    /// The line of WAL followed, judged as `check` judges it.
    line: crate::archive::continuity::Continuity,
    /// The recovery target given to PostgreSQL (`None`: to the end).
    target: Option<super::recovery_conf::TargetTime>,
    /// The last commit or abort the line holds: where a restore to the end arrives.
    recovery_point: Option<crate::checks::recovery_point::RecoveryPoint>,
    /// What `walwarden wal-get` is told (the same line as `line`), written
    /// beside the data directory by the recovery-config step.
    helper_plan: WalGetPlan,
}

pub fn run(
    client: &Client,
    request: &RestoreRequest,
    driver: &mut dyn Driver,
) -> Result<Summary, RestoreError> {
    let mut request = request.clone();
    // Every path is absolute from here on: a relative one would mean
    // something else to the server started later, in another folder.
    request.data_dir = std::path::absolute(&request.data_dir).map_err(|source| {
        PreflightRefusal::Archive(crate::store::guard::GuardError::Unresolvable {
            what: "the data directory".into(),
            path: request.data_dir.clone(),
            reason: source.to_string(),
        })
    })?;
    for path in [request.pg_bin.as_mut(), request.local.log.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Ok(absolute) = std::path::absolute(&*path) {
            *path = absolute;
        }
    }
    guard_paths(client, &request)?;
    let journal_path = Journal::path_for(&request.data_dir);
    let journal_error = |source| RestoreError::Journal {
        path: journal_path.clone(),
        source,
    };
    let resumed = if request.resume {
        let path = journal_path.clone();
        let entries = Journal::read(&path)
            .map_err(|source| PreflightRefusal::JournalUnreadable { path, source })?;
        let resumed = Resumed::from_journal(&entries)?;
        // The interrupted attempt's settings, not today's defaults.
        if let Some(asked) = &resumed.request {
            asked.fill(&mut request);
            driver.progress(
                StepKind::Preflight,
                &format!(
                    "resuming with the settings the journal kept: {}",
                    describe(asked)
                ),
            );
        }
        Some(resumed)
    } else {
        None
    };
    let request = &request;
    let mut journal = Journal::open(&request.data_dir, request.dry_run).map_err(journal_error)?;
    if resumed.is_none() {
        journal
            .record_request(&JournaledRequest::of(request))
            .map_err(journal_error)?;
    }
    let mut summary = Summary {
        journal: journal.path().to_owned(),
        ..Summary::default()
    };
    let mut runner = Runner {
        client,
        request,
        driver,
        journal: &mut journal,
        summary: &mut summary,
        log_offset: 0,
        resumed,
        clock: PhaseClock::default(),
        plan_path: None,
    };
    let result = runner.all();
    // Whatever ended the restore: no prefetcher or spool outlives it, unless
    // the server it serves is still recovering.
    runner.end_helper(result.is_err());
    runner.summary.phases = runner.clock.times();
    result?;
    Ok(summary)
}

/// The archive is untouchable: the client's root is protected for the rest
/// of the process, and the paths this restore writes before its preflight
/// (the data directory, the journal beside it) are checked before anything
/// is written, so a refused restore leaves no trace either.
fn guard_paths(client: &Client, request: &RestoreRequest) -> Result<(), RestoreError> {
    use crate::store::guard;
    if let Some(root) = client.path.parent() {
        guard::protect(root);
    }
    guard::protect(&client.path);
    for (path, what) in [
        (request.data_dir.clone(), "the data directory"),
        (Journal::path_for(&request.data_dir), "the restore journal"),
    ] {
        guard::check_write(&path, what).map_err(PreflightRefusal::Archive)?;
    }
    if let Some(log) = &request.local.log {
        guard::check_write(log, "the server log").map_err(PreflightRefusal::Archive)?;
    }
    Ok(())
}

/// A journaled request as one line for the engineer.
fn describe(asked: &JournaledRequest) -> String {
    let mut parts: Vec<String> = asked
        .settings
        .iter()
        .map(|(k, v)| format!("--set {k}={v}"))
        .collect();
    if let Some(t) = &asked.target_time {
        parts.push(format!("--target-time {t}"));
    }
    if let Some(t) = asked.timeline {
        parts.push(format!("--timeline {t}"));
    }
    if let Some(bin) = &asked.pg_bin {
        parts.push(format!("--pg-bin {}", crate::display::escape_path(bin)));
    }
    parts.push(format!("--os-user {}", asked.os_user));
    parts.extend(asked.forced.iter().map(|f| format!("--force {f}")));
    parts.join(" ")
}

struct Runner<'a> {
    client: &'a Client,
    request: &'a RestoreRequest,
    driver: &'a mut dyn Driver,
    journal: &'a mut Journal,
    summary: &'a mut Summary,
    /// Where the server's log stood when the start ran: followed from there.
    log_offset: u64,
    /// With `--resume`: what the interrupted restore finished.
    resumed: Option<Resumed>,
    clock: PhaseClock,
    /// The wal-get plan this restore's server uses, once written (or found, on resume).
    plan_path: Option<PathBuf>,
}

impl Runner<'_> {
    fn all(&mut self) -> Result<(), RestoreError> {
        let checked = self.timed(StepKind::Preflight, |r| r.preflight())?;
        if !self.resumed_past(StepKind::StopRemote)? {
            self.timed(StepKind::StopRemote, |r| r.stop_remote(&checked))?;
        }
        let own_server_running = self
            .resumed
            .as_ref()
            .is_some_and(|r| r.has(StepKind::Start))
            && postmaster_alive(&self.request.data_dir);
        if own_server_running {
            self.record(
                StepKind::StopLocal,
                Outcome::Skipped,
                "the server running there is the one the interrupted restore started",
                None,
            )?;
        } else {
            self.timed(StepKind::StopLocal, |r| r.stop_local(&checked))?;
        }
        if self.resumed_past(StepKind::Unpack)? {
            // Unpacked whole before the interruption: its files stay.
            self.resumed_past(StepKind::Clear)?;
        } else if self
            .resumed
            .as_ref()
            .is_some_and(|r| r.has(StepKind::Clear))
        {
            self.timed(StepKind::Clear, |r| r.clear_interrupted_unpack(&checked))?;
            self.timed(StepKind::Unpack, |r| r.unpack(&checked))?;
        } else {
            self.timed(StepKind::Clear, |r| r.clear(&checked))?;
            self.timed(StepKind::Unpack, |r| r.unpack(&checked))?;
        }
        if self.resumed_past(StepKind::RecoveryConfig)? {
            // The interrupted restore's server names this plan: put it back if it went.
            self.ensure_helper_plan(&checked)
                .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
        } else {
            self.timed(StepKind::RecoveryConfig, |r| r.recovery_config(&checked))?;
        }
        if self.resumed.is_some() && postmaster_alive(&self.request.data_dir) {
            self.record(
                StepKind::Start,
                Outcome::Skipped,
                "already running (started by the interrupted restore): following its log from the start",
                None,
            )?;
        } else {
            self.timed(StepKind::Start, |r| r.start(&checked))?;
        }
        self.timed(StepKind::FollowLog, |r| r.follow_log(&checked))?;
        self.timed(StepKind::Report, |r| r.report(&checked))?;
        Ok(())
    }

    fn timed<T>(
        &mut self,
        step: StepKind,
        action: impl FnOnce(&mut Self) -> Result<T, RestoreError>,
    ) -> Result<T, RestoreError> {
        let started = Instant::now();
        let phase = match step {
            StepKind::Preflight => Some(Phase::Preflight),
            StepKind::Unpack => Some(Phase::Unpack),
            _ => None,
        };
        if let Some(phase) = phase {
            self.clock.begin_at(phase, started);
        }
        if step == StepKind::Start {
            // Ended by the follow-log step when the server accepts writes.
            self.clock.begin_at(Phase::StartToWritable, started);
        }
        let result = action(self);
        if let Some(phase) = phase
            && result.is_ok()
        {
            self.clock.end(phase);
        }
        self.summary.step_times.push((step, started.elapsed()));
        if let Err(error) = &result {
            let outcome = if matches!(error, RestoreError::Cancelled(_)) {
                Outcome::Skipped
            } else {
                Outcome::Failed
            };
            let _ = self
                .journal
                .record(step.id(), outcome.clone(), error.to_string(), None);
            self.driver.step(step, outcome, &error.to_string());
        }
        result
    }

    /// With `--resume`, a step the interrupted restore finished is recorded
    /// as skipped and not run again; true when so.
    fn resumed_past(&mut self, step: StepKind) -> Result<bool, RestoreError> {
        if !self.resumed.as_ref().is_some_and(|r| r.has(step)) {
            return Ok(false);
        }
        self.record(
            step,
            Outcome::Skipped,
            "done by the interrupted restore (journal)",
            None,
        )?;
        Ok(true)
    }

    /// Asks the driver, except in a dry run, which changes nothing and so only says what it would ask.
    fn confirm(&mut self, question: &str) -> bool {
        if self.request.dry_run {
            self.driver.progress(
                StepKind::Preflight,
                &format!("(dry run) would ask: {question}"),
            );
            return true;
        }
        self.driver.confirm(question)
    }

    fn confirm_typed(&mut self, prompt: &str, expected: &str) -> bool {
        if self.request.dry_run {
            self.driver.progress(
                StepKind::Preflight,
                &format!("(dry run) would ask: {prompt}"),
            );
            return true;
        }
        self.driver.confirm_typed(prompt, expected)
    }

    fn done(&mut self, step: StepKind, detail: &str) -> Result<(), RestoreError> {
        let outcome = if self.request.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Done
        };
        self.record(step, outcome, detail, None)
    }

    fn record(
        &mut self,
        step: StepKind,
        outcome: Outcome,
        detail: &str,
        moved: Option<PathBuf>,
    ) -> Result<(), RestoreError> {
        self.journal
            .record(step.id(), outcome.clone(), detail, moved)
            .map_err(|source| RestoreError::Journal {
                path: self.journal.path().to_owned(),
                source,
            })?;
        self.driver.step(step, outcome, detail);
        Ok(())
    }

    /// Runs (or in a dry run, shows) a command; fails the step on a non-zero exit.
    fn exec(&mut self, step: StepKind, mut command: Command) -> Result<String, RestoreError> {
        self.driver.command(&local::display(&command));
        if self.request.dry_run {
            return Ok(String::new());
        }
        let output = command.output().map_err(|source| {
            fail(
                step,
                StepFailure::CannotRun {
                    command: local::display(&command),
                    source,
                },
            )
        })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(fail(
                step,
                StepFailure::CommandFailed {
                    command: local::display(&command),
                    status: output.status,
                    output: text.trim().to_owned(),
                },
            ));
        }
        Ok(text)
    }
}

fn fail(step: StepKind, failure: StepFailure) -> RestoreError {
    RestoreError::Step {
        step: step.id(),
        failure,
    }
}
