//! The restore's steps, run in order by `run`. Every step journals what it
//! did; destructive ones (stopping a server, clearing the data directory)
//! ask the driver first, and a refusal leaves everything as it was.

use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::RestoreError;
use super::journal::{Journal, Outcome};
use super::recovery_conf::{self, ArchiveLayout, RecoverySettings, TargetAction, TargetTime};
use super::unpack::{self, UnpackOptions};
use crate::archive::catalog::{BaseFileKind, Client};
use crate::checks::health::short_duration;
use crate::config::TargetServer;
use crate::pg::local::{self, PgUser};
use crate::pg::pglog::{ReplayOutcome, ReplayTracker};
use crate::pg::remote;

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

/// What the engineer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub data_dir: PathBuf,
    pub target_time: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub os_user: String,
    /// `--set KEY=VALUE`: settings for the restored instance.
    pub settings: Vec<(String, String)>,
    pub dry_run: bool,
    /// Delete the old contents instead of moving them aside (typed confirmation).
    pub purge: bool,
    /// How long to follow the log before giving up on replay.
    pub replay_timeout: Duration,
    /// The client's old server, from `[clients.NAME.target]`: stopped over SSH first.
    pub target: Option<TargetServer>,
    /// How the local instance is started and stopped; unset parts are detected.
    pub local: LocalService,
    /// Preflight checks the engineer chose to go past (`--force archive-readable`):
    /// journaled, and the log's diagnosis still names what then goes wrong.
    pub forced: Vec<String>,
    /// Go on from where an interrupted restore's journal stops (`--resume`).
    pub resume: bool,
}

/// What the journal of an interrupted restore says was finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    pub done: Vec<StepKind>,
}

impl Resumed {
    /// The steps finished since the last restore that completed or was rolled
    /// back; refused when there is nothing to resume.
    pub fn from_journal(entries: &[super::journal::Entry]) -> Result<Resumed, String> {
        let from = entries
            .iter()
            .rposition(|e| {
                e.step == "rollback" || (e.step == "report" && e.outcome == Outcome::Done)
            })
            .map_or(0, |i| i + 1);
        let attempt = &entries[from..];
        if attempt.is_empty() {
            return Err(
                "the journal records no unfinished restore: nothing to resume (start a new restore)"
                    .into(),
            );
        }
        let done = StepKind::ALL
            .iter()
            .copied()
            .filter(|step| {
                attempt.iter().any(|e| {
                    e.step == step.id()
                        && (e.outcome == Outcome::Done
                            || (*step == StepKind::StopRemote && e.outcome == Outcome::Skipped))
                })
            })
            .collect();
        Ok(Resumed { done })
    }

    pub fn has(&self, step: StepKind) -> bool {
        self.done.contains(&step)
    }
}

/// The preflight checks `--force` may go past.
pub const FORCEABLE_CHECKS: &[&str] = &["archive-readable"];

/// Shell command lines that start and stop the local instance, and the log
/// its start writes. Placeholders: `{data}`, `{log}`, `{major}`, `{pg_bin}`.
/// Unset: Debian's `pg_ctlcluster MAJOR CLUSTER` when /etc/postgresql names
/// the data directory, else `pg_ctl` as the PostgreSQL user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalService {
    pub start: Option<String>,
    pub stop: Option<String>,
    pub log: Option<PathBuf>,
}

/// How this restore controls the local instance, resolved at preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServiceControl {
    /// `pg_ctl -D DATA [-l LOG] start|stop` as the PostgreSQL user.
    PgCtl,
    /// Shell command lines run as walwarden (placeholders filled in).
    Commands {
        start: String,
        stop: String,
        /// Where they come from, for the journal ("configured", "Debian cluster 15/main").
        why: String,
    },
}

/// The Debian cluster (`/etc/postgresql/MAJOR/NAME/postgresql.conf`) whose
/// `data_directory` is `data_dir`, if any.
pub fn debian_cluster(etc: &Path, major: u32, data_dir: &Path) -> Option<String> {
    let dir = etc.join(major.to_string());
    let wanted = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let conf = fs::read_to_string(entry.path().join("postgresql.conf")).ok()?;
        let named = conf.lines().find_map(|line| {
            let line = line.split('#').next()?.trim();
            let (key, value) = line.split_once('=')?;
            (key.trim() == "data_directory").then(|| value.trim().trim_matches('\'').to_owned())
        })?;
        let named = PathBuf::from(named);
        let named = fs::canonicalize(&named).unwrap_or(named);
        (named == wanted).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

/// The local instance's control and the log its start writes.
fn resolve_service(
    request: &RestoreRequest,
    major: u32,
    pg_bin: &Path,
    default_log: PathBuf,
) -> (ServiceControl, PathBuf) {
    let data = &request.data_dir;
    let local = &request.local;
    if local.start.is_some() || local.stop.is_some() {
        let log = local.log.clone().unwrap_or(default_log);
        let pg_ctl = |verb: &str| {
            format!(
                "runuser -u {} -- {{pg_bin}}/pg_ctl -D {{data}} {verb}",
                request.os_user
            )
        };
        let start = local
            .start
            .clone()
            .unwrap_or_else(|| pg_ctl("-l {log} -W start"));
        let stop = local
            .stop
            .clone()
            .unwrap_or_else(|| pg_ctl("stop -m fast -w -t 120"));
        let fill = |text: &str| fill_placeholders(text, data, &log, major, pg_bin);
        return (
            ServiceControl::Commands {
                start: fill(&start),
                stop: fill(&stop),
                why: "configured".into(),
            },
            log,
        );
    }
    if let Some(cluster) = debian_cluster(Path::new("/etc/postgresql"), major, data) {
        let log = local.log.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/log/postgresql/postgresql-{major}-{cluster}.log"
            ))
        });
        return (
            ServiceControl::Commands {
                start: format!("pg_ctlcluster {major} {cluster} start"),
                stop: format!("pg_ctlcluster {major} {cluster} stop -m fast"),
                why: format!("Debian cluster {major}/{cluster}"),
            },
            log,
        );
    }
    (
        ServiceControl::PgCtl,
        local.log.clone().unwrap_or(default_log),
    )
}

/// Whether a postmaster named by `data/postmaster.pid` is alive.
fn postmaster_alive(data: &Path) -> bool {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// A configured command line, run by `sh -c` as walwarden.
fn shell(line: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(line);
    command
}

/// A service manager's stop may return before the postmaster has gone.
fn wait_for_pid_file_gone(pid_file: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` with `{data}`, `{log}`, `{major}` and `{pg_bin}` filled in, shell-quoted.
fn fill_placeholders(text: &str, data: &Path, log: &Path, major: u32, pg_bin: &Path) -> String {
    let quote = |p: &Path| local::shell_quote(&p.to_string_lossy());
    text.replace("{data}", &quote(data))
        .replace("{log}", &quote(log))
        .replace("{major}", &major.to_string())
        .replace("{pg_bin}", &quote(pg_bin))
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
}

/// What a finished (or stopped) restore reports.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub journal: PathBuf,
    pub moved_aside_to: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub replay: Option<ReplayOutcome>,
    pub in_recovery: Option<bool>,
    pub last_replayed_transaction: Option<String>,
    pub step_times: Vec<(StepKind, Duration)>,
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
}

pub fn run(
    client: &Client,
    request: &RestoreRequest,
    driver: &mut dyn Driver,
) -> Result<Summary, RestoreError> {
    let journal_error = |source| RestoreError::Journal {
        path: Journal::path_for(&request.data_dir),
        source,
    };
    let resumed = if request.resume {
        let path = Journal::path_for(&request.data_dir);
        let entries = Journal::read(&path).map_err(|e| {
            RestoreError::Preflight(format!(
                "--resume: cannot read the journal {}: {e}",
                path.display()
            ))
        })?;
        Some(Resumed::from_journal(&entries).map_err(RestoreError::Preflight)?)
    } else {
        None
    };
    let mut journal = Journal::open(&request.data_dir, request.dry_run).map_err(journal_error)?;
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
    };
    runner.all()?;
    Ok(summary)
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
        if !self.resumed_past(StepKind::RecoveryConfig)? {
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
        let result = action(self);
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

    /// Resuming after an interrupted unpack: the data directory holds only
    /// that restore's files (the old contents were moved aside before). They
    /// are kept in `<dir>.failed-<time>`, never deleted, and the unpack starts over.
    fn clear_interrupted_unpack(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let has_files = fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some());
        if !has_files {
            return self.done(
                StepKind::Clear,
                "empty: the interrupted restore left nothing",
            );
        }
        let kept = super::journal::stamped_sibling(&data, "failed");
        self.driver.command(&format!(
            "mv {} {} && mkdir {}",
            local::shell_quote(&data.to_string_lossy()),
            local::shell_quote(&kept.to_string_lossy()),
            local::shell_quote(&data.to_string_lossy())
        ));
        if !self.request.dry_run {
            fs::rename(&data, &kept).map_err(|e| {
                fail(
                    StepKind::Clear,
                    format!("cannot move {} to {}: {e}", data.display(), kept.display()),
                )
            })?;
            fs::create_dir(&data).map_err(|e| {
                fail(
                    StepKind::Clear,
                    format!("cannot create {}: {e}", data.display()),
                )
            })?;
            prepare_dir(&data, &checked.user).map_err(|e| fail(StepKind::Clear, e))?;
        }
        self.done(
            StepKind::Clear,
            &format!(
                "the interrupted unpack's files kept in {}; unpacking again",
                kept.display()
            ),
        )
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
        let output = command.output().map_err(|e| {
            fail(
                step,
                format!("cannot run {}: {e}", local::display(&command)),
            )
        })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(fail(
                step,
                format!(
                    "{} failed ({}): {}",
                    local::display(&command),
                    output.status,
                    text.trim()
                ),
            ));
        }
        Ok(text)
    }

    fn preflight(&mut self) -> Result<Checked, RestoreError> {
        let client = self.client;
        let request = self.request;
        let refuse = |why: String| Err(RestoreError::Preflight(why));
        let base_dir = client.path.join("base");
        let (Some(base_tar), Some(pg_wal_tar)) = (
            client.base.file(BaseFileKind::BaseTar),
            client.base.file(BaseFileKind::PgWalTar),
        ) else {
            return refuse(format!(
                "{} has no complete base backup (base.tar.gz and pg_wal.tar.gz)",
                client.name
            ));
        };
        if let Some(ts) = client
            .base
            .files
            .iter()
            .find(|f| f.kind == BaseFileKind::Tablespace)
        {
            return refuse(format!(
                "the backup has a tablespace tarball ({}): restoring tablespaces is not supported yet; unpack it by hand to the path in tablespace_map",
                ts.fact.name
            ));
        }
        let Some(backup_version) = client
            .base
            .pg_version()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        else {
            return refuse("PG_VERSION could not be read from base.tar.gz".into());
        };
        let pg_bin = request
            .pg_bin
            .clone()
            .unwrap_or_else(|| local::default_pg_bin(backup_version));
        let major = local::server_major(&pg_bin)?;
        if major != backup_version {
            return refuse(format!(
                "the backup is PostgreSQL {backup_version} but {} is PostgreSQL {major}: a physical backup only restores onto the same major version; install PostgreSQL {backup_version} (--pg-bin), or restore on {backup_version} and move with pg_dumpall -c / psql (the tutorial's last section)",
                pg_bin.display()
            ));
        }
        let user = PgUser::lookup(&request.os_user)?;
        if !user.can_act_as() {
            return refuse(format!(
                "walwarden runs as another user than {}: run it with sudo",
                user.name
            ));
        }
        self.check_data_dir(&client.path)?;
        let plan = unpack::scan_tarball_remembered(&base_dir.join(&base_tar.fact.name))
            .map_err(|e| RestoreError::Preflight(e.to_string()))?;
        let wal_plan = unpack::scan_tarball_remembered(&base_dir.join(&pg_wal_tar.fact.name))
            .map_err(|e| RestoreError::Preflight(e.to_string()))?;
        if let Some(bad) = plan.refused.first().or(wal_plan.refused.first()) {
            return refuse(format!(
                "the tarball has an entry that would escape the data directory: {} ({})",
                bad.entry, bad.reason
            ));
        }
        let needed = plan.disk_bytes + wal_plan.disk_bytes;
        let parent = existing_ancestor(&request.data_dir);
        let free = nix::sys::statvfs::statvfs(&parent)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(u64::MAX);
        if free < needed + needed / 10 {
            return refuse(format!(
                "{} has {} free; the backup unpacks to {} (+10% margin)",
                parent.display(),
                crate::display::human_bytes(free),
                crate::display::human_bytes(needed)
            ));
        }
        if let Some(gap) = client.continuity.gaps.iter().find(|g| g.before_consistency) {
            return refuse(format!(
                "WAL needed to reach consistency is missing ({} .. {}): the base backup cannot be restored; take a new one",
                gap.first, gap.last
            ));
        }
        let wal_dir = client.path.join("wal");
        if let Err(refused) = self.check_archive_readable(&user, &wal_dir) {
            if !request.forced.iter().any(|f| f == "archive-readable") {
                return Err(refused);
            }
            self.driver.progress(
                StepKind::Preflight,
                &format!("FORCED past (--force archive-readable): {refused}"),
            );
            // Its own journal line: the record shows the engineer went past it.
            self.journal
                .record("forced", Outcome::Skipped, refused.to_string(), None)
                .map_err(|source| RestoreError::Journal {
                    path: self.journal.path().to_owned(),
                    source,
                })?;
        }
        let compressed = client.wal.segments.iter().any(|s| s.compressed);
        let plain = client.wal.segments.iter().any(|s| !s.compressed);
        let layout = match (compressed, plain) {
            (true, true) => ArchiveLayout::Both,
            (false, true) => ArchiveLayout::Plain,
            _ => ArchiveLayout::Compressed,
        };
        let window = match (
            client.continuity.restorable_from,
            client.continuity.restorable_to,
        ) {
            (Some(from), Some(to)) => format!(
                "restorable from {} to {}",
                crate::serde_util::time_text(from),
                crate::serde_util::time_text(to)
            ),
            _ => "restorable window unknown".into(),
        };
        let gaps = match client.continuity.gaps.len() {
            0 => String::new(),
            n => format!("; {n} gap(s) after consistency: replay stops at the first"),
        };
        self.done(
            StepKind::Preflight,
            &format!(
                "PostgreSQL {major} backup, {} to unpack, {window}{gaps}",
                crate::display::human_bytes(needed)
            ),
        )?;
        let default_log = request.data_dir.join("log").join("walwarden-restore.log");
        let (service, log) = resolve_service(request, major, &pg_bin, default_log);
        Ok(Checked {
            user,
            pg_bin,
            major,
            base_tar: base_dir.join(&base_tar.fact.name),
            pg_wal_tar: base_dir.join(&pg_wal_tar.fact.name),
            layout,
            archive_last: client.continuity.restorable_through.clone(),
            log,
            service,
        })
    }

    /// Refuses a data directory that is neither empty nor a PostgreSQL one,
    /// a mount point, or a place inside the backup root.
    fn check_data_dir(&mut self, client_dir: &Path) -> Result<(), RestoreError> {
        let data = &self.request.data_dir;
        let refuse = |why: String| Err(RestoreError::Preflight(why));
        if !data.is_absolute() {
            return refuse(format!(
                "--data-dir {} must be an absolute path",
                data.display()
            ));
        }
        let root = client_dir.parent().unwrap_or(client_dir);
        let canonical_data =
            fs::canonicalize(existing_ancestor(data)).unwrap_or_else(|_| data.clone());
        if let Ok(root) = fs::canonicalize(root)
            && canonical_data.starts_with(&root)
        {
            return refuse(format!(
                "{} is inside the backup root {}: the archive is never written to",
                data.display(),
                root.display()
            ));
        }
        match fs::symlink_metadata(data) {
            Err(_) => Ok(()),
            Ok(meta) if !meta.is_dir() => refuse(format!("{} is not a directory", data.display())),
            Ok(meta) => {
                let parent = data.parent().and_then(|p| fs::metadata(p).ok());
                if parent.is_none_or(|p| p.dev() != meta.dev()) {
                    return refuse(format!(
                        "{} is a mount point: moving its contents aside would cross file systems; point --data-dir at a folder inside it",
                        data.display()
                    ));
                }
                let empty = fs::read_dir(data)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                // Resuming after the clear: what is there is the interrupted restore's own.
                let ours = self
                    .resumed
                    .as_ref()
                    .is_some_and(|r| r.has(StepKind::Clear));
                if !empty && !ours && !data.join("PG_VERSION").is_file() {
                    return refuse(format!(
                        "{} is neither empty nor a PostgreSQL data directory (no PG_VERSION): refusing to clear it",
                        data.display()
                    ));
                }
                Ok(())
            }
        }
    }

    /// The tutorial's "Permission denied": checked as the PostgreSQL user before anything is touched.
    fn check_archive_readable(
        &mut self,
        user: &PgUser,
        wal_dir: &Path,
    ) -> Result<(), RestoreError> {
        let sample = self
            .client
            .wal
            .segments
            .iter()
            .rev()
            .find(|s| !s.partial)
            .map(|s| wal_dir.join(s.file_name()));
        let mut command = user.command("sh");
        let script = match &sample {
            Some(file) => format!(
                "test -r {0} && test -x {0} && head -c 1 {1} > /dev/null",
                local::shell_quote(&wal_dir.to_string_lossy()),
                local::shell_quote(&file.to_string_lossy())
            ),
            None => format!(
                "test -r {0} && test -x {0}",
                local::shell_quote(&wal_dir.to_string_lossy())
            ),
        };
        command.arg("-c").arg(script);
        let ok = command.status().map(|s| s.success()).unwrap_or(false);
        if ok {
            return Ok(());
        }
        Err(RestoreError::Preflight(format!(
            "the WAL archive {} is not readable by {}: PostgreSQL would silently recover only to the end of the base backup. Fix: chmod o+rx on the folders up to it and o+r on the files, or add {} to the client's group (chmod -R g+rX)",
            wal_dir.display(),
            user.name,
            user.name
        )))
    }

    fn stop_remote(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        stop_remote(self.request, checked.major, self.driver, self.journal)
    }

    fn stop_local(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = &self.request.data_dir;
        let pid_file = data.join("postmaster.pid");
        if !postmaster_alive(data) {
            return self.record(
                StepKind::StopLocal,
                Outcome::Skipped,
                "no postmaster is running on the data directory",
                None,
            );
        }
        let how = match &checked.service {
            ServiceControl::PgCtl => "pg_ctl stop -m fast".to_owned(),
            ServiceControl::Commands { stop, .. } => stop.clone(),
        };
        if !self.confirm(&format!(
            "A PostgreSQL server is running on {}. Stop it ({how})?",
            data.display()
        )) {
            return Err(RestoreError::Cancelled(StepKind::StopLocal.id()));
        }
        let command = match &checked.service {
            ServiceControl::PgCtl => {
                let mut command = checked.user.command(checked.pg_bin.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(data)
                    .args(["stop", "-m", "fast", "-w", "-t", "120"]);
                command
            }
            ServiceControl::Commands { stop, .. } => shell(stop),
        };
        self.exec(StepKind::StopLocal, command)?;
        if !self.request.dry_run {
            wait_for_pid_file_gone(&pid_file, Duration::from_secs(120));
        }
        if !self.request.dry_run && pid_file.exists() {
            return Err(fail(
                StepKind::StopLocal,
                "postmaster.pid is still there after the stop".into(),
            ));
        }
        self.done(StepKind::StopLocal, "stopped")
    }

    fn clear(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let entries: Vec<PathBuf> = fs::read_dir(&data)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            if !self.request.dry_run {
                fs::create_dir_all(&data).map_err(|e| {
                    fail(
                        StepKind::Clear,
                        format!("cannot create {}: {e}", data.display()),
                    )
                })?;
                prepare_dir(&data, &checked.user).map_err(|e| fail(StepKind::Clear, e))?;
            }
            self.driver.command(&format!(
                "mkdir -p {} && chown {} && chmod 700",
                local::shell_quote(&data.to_string_lossy()),
                checked.user.name
            ));
            return self.done(
                StepKind::Clear,
                &format!("{} is empty and ready", data.display()),
            );
        }
        if self.request.purge {
            let expected = &self.client.name;
            if !self.confirm_typed(&format!("Delete everything in {} for good? Type the client name ({expected}) to confirm", data.display()), expected) {
                return Err(RestoreError::Cancelled(StepKind::Clear.id()));
            }
            for entry in &entries {
                self.driver.command(&format!(
                    "rm -rf {}",
                    local::shell_quote(&entry.to_string_lossy())
                ));
                if !self.request.dry_run {
                    remove(entry).map_err(|e| {
                        fail(
                            StepKind::Clear,
                            format!("cannot delete {}: {e}", entry.display()),
                        )
                    })?;
                }
            }
            return self.done(
                StepKind::Clear,
                &format!("deleted {} entries", entries.len()),
            );
        }
        let aside = super::journal::stamped_sibling(&data, "aside");
        if !self.confirm(&format!(
            "Move the {} entries of {} aside to {}?",
            entries.len(),
            data.display(),
            aside.display()
        )) {
            return Err(RestoreError::Cancelled(StepKind::Clear.id()));
        }
        self.driver.command(&format!(
            "mkdir {0} && mv {1}/* {0}/",
            local::shell_quote(&aside.to_string_lossy()),
            local::shell_quote(&data.to_string_lossy())
        ));
        if self.request.dry_run {
            return self.done(
                StepKind::Clear,
                &format!("would move the old contents to {}", aside.display()),
            );
        }
        fs::create_dir(&aside).map_err(|e| {
            fail(
                StepKind::Clear,
                format!("cannot create {}: {e}", aside.display()),
            )
        })?;
        // Journal before moving: a crash in the middle still knows where things went.
        self.record(
            StepKind::Clear,
            Outcome::Started,
            "moving the old contents aside",
            Some(aside.clone()),
        )?;
        for entry in &entries {
            let target = aside.join(entry.file_name().unwrap_or_default());
            fs::rename(entry, &target).map_err(|e| {
                fail(
                    StepKind::Clear,
                    format!(
                        "cannot move {} to {}: {e}",
                        entry.display(),
                        target.display()
                    ),
                )
            })?;
        }
        self.summary.moved_aside_to = Some(aside.clone());
        self.record(
            StepKind::Clear,
            Outcome::Done,
            &format!("moved the old contents to {}", aside.display()),
            Some(aside),
        )
    }

    fn unpack(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let pg_wal = data.join("pg_wal");
        for (tarball, dest) in [(&checked.base_tar, &data), (&checked.pg_wal_tar, &pg_wal)] {
            // pg_wal.tar.gz holds its files at the tar root: they belong in DATA/pg_wal.
            self.driver.command(&format!(
                "tar xzf {} -C {}",
                local::shell_quote(&tarball.to_string_lossy()),
                local::shell_quote(&dest.to_string_lossy())
            ));
            if self.request.dry_run {
                continue;
            }
            fs::create_dir_all(dest).map_err(|e| {
                fail(
                    StepKind::Unpack,
                    format!("cannot create {}: {e}", dest.display()),
                )
            })?;
            prepare_dir(dest, &checked.user).map_err(|e| fail(StepKind::Unpack, e))?;
            let options = UnpackOptions {
                owner: Some((checked.user.uid, checked.user.gid)),
            };
            self.driver.progress(
                StepKind::Unpack,
                &format!("unpacking {}", tarball.display()),
            );
            let driver = &mut *self.driver;
            let mut last_shown = Instant::now() - Duration::from_secs(10);
            let summary = unpack::unpack(tarball, dest, &options, &mut |p| {
                                if last_shown.elapsed() >= Duration::from_millis(500) {
                    last_shown = Instant::now();
                    let ratio = p.compressed_done as f64 / p.compressed_total.max(1) as f64;
                    let name = tarball.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    driver.gauge(StepKind::Unpack, ratio, &format!("unpacking {name}"));
                    let eta = p.eta().map_or(String::new(), |e| format!(", {} left", short_duration(e)));
                    driver.progress(
                        StepKind::Unpack,
                        &format!(
                            "{}: {} of {} read, {} files, {:.0} MB/s{eta}",
                            tarball.file_name().unwrap_or_default().to_string_lossy(),
                            crate::display::human_bytes(p.compressed_done),
                            crate::display::human_bytes(p.compressed_total),
                            p.files,
                            p.rate() / 1e6
                        ),
                    );
                }
            })
            .map_err(|e| fail(StepKind::Unpack, format!("{e}; the data directory is incomplete: restore again, or roll back from the journal")))?;
            // Unpacking does not sync file by file: once, here, before anything relies on it.
            unpack::sync_tree(dest).map_err(|e| fail(StepKind::Unpack, e.to_string()))?;
            self.driver.progress(
                StepKind::Unpack,
                &format!(
                    "{}: {} files, {} in {}",
                    tarball.display(),
                    summary.files,
                    crate::display::human_bytes(summary.bytes),
                    short_duration(summary.elapsed)
                ),
            );
        }
        if !self.request.dry_run {
            // postgres also needs these to exist, and the log folder for our start command.
            for dir in [data.join("pg_wal/archive_status"), data.join("log")] {
                fs::create_dir_all(&dir).map_err(|e| {
                    fail(
                        StepKind::Unpack,
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
                prepare_dir(&dir, &checked.user).map_err(|e| fail(StepKind::Unpack, e))?;
            }
            // A stale postmaster.pid from the backup would stop the start.
            let _ = fs::remove_file(data.join("postmaster.pid"));
        }
        let detail = if self.request.dry_run {
            "would unpack the base backup and its WAL"
        } else {
            "base backup and its WAL unpacked"
        };
        self.done(StepKind::Unpack, detail)
    }

    fn recovery_config(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let target_time = match &self.request.target_time {
            Some(text) => Some(
                recovery_conf::parse_target_time(text)
                    .map_err(|e| fail(StepKind::RecoveryConfig, e.to_string()))?,
            ),
            None => None,
        };
        let settings = RecoverySettings {
            major: checked.major,
            archive_dir: self.client.path.join("wal"),
            layout: checked.layout,
            target_timeline: self
                .client
                .continuity
                .recovery_target_timeline()
                .unwrap_or_else(|| "current".to_owned()),
            target_time,
            target_action: TargetAction::Pause,
            extra: self.request.settings.clone(),
        };
        let files = recovery_conf::recovery_files(&settings)
            .map_err(|e| fail(StepKind::RecoveryConfig, e.to_string()))?;
        let data = &self.request.data_dir;
        // A Debian-layout cluster keeps these in /etc/postgresql: its base
        // backup has none, and PostgreSQL will not start without them.
        let mut supplied = Vec::new();
        for (name, content) in recovery_conf::DEBIAN_LAYOUT_FILES {
            let path = data.join(name);
            if self.request.dry_run || path.exists() {
                continue;
            }
            self.driver.command(&format!(
                "write {} (the base backup has none: a Debian-layout cluster keeps it in /etc/postgresql)",
                path.display()
            ));
            write_owned(&path, content.as_bytes(), &checked.user, false)
                .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            supplied.push(*name);
        }
        for (relative, content) in &files.files {
            let path = data.join(relative);
            self.driver.command(&format!(
                "write {} ({} bytes, mode 0600)",
                path.display(),
                content.len()
            ));
            if !self.request.dry_run {
                write_owned(&path, content.as_bytes(), &checked.user, false)
                    .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            }
        }
        if !files.auto_conf_append.is_empty() {
            let path = data.join("postgresql.auto.conf");
            self.driver.command(&format!(
                "append to {}:\n{}",
                path.display(),
                files.auto_conf_append.trim_end()
            ));
            if !self.request.dry_run {
                write_owned(
                    &path,
                    files.auto_conf_append.as_bytes(),
                    &checked.user,
                    true,
                )
                .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            }
        }
        let kind = if checked.major >= 12 {
            "recovery.signal + postgresql.auto.conf"
        } else {
            "recovery.conf"
        };
        let verb = if self.request.dry_run {
            "would be written"
        } else {
            "written"
        };
        let supplied = if supplied.is_empty() {
            String::new()
        } else {
            format!(
                "; {} written (the backup had none; pg_hba.conf allows local peer connections only)",
                supplied.join(", ")
            )
        };
        self.done(
            StepKind::RecoveryConfig,
            &format!("{kind} {verb}; archiving is off in the restored instance{supplied}"),
        )
    }

    fn start(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        // A shared log (Debian's) already holds other runs: follow it from here.
        self.log_offset = fs::metadata(&checked.log).map_or(0, |m| m.len());
        let command = match &checked.service {
            ServiceControl::PgCtl => {
                let mut command = checked.user.command(checked.pg_bin.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(&self.request.data_dir)
                    .arg("-l")
                    .arg(&checked.log)
                    .args(["-W", "start"]);
                command
            }
            ServiceControl::Commands { start, why, .. } => {
                self.driver
                    .progress(StepKind::Start, &format!("start command: {why}"));
                shell(start)
            }
        };
        self.exec(StepKind::Start, command)?;
        self.summary.log = Some(checked.log.clone());
        let verb = if self.request.dry_run {
            "would start"
        } else {
            "started"
        };
        self.done(
            StepKind::Start,
            &format!("{verb}; log in {}", checked.log.display()),
        )
    }

    fn follow_log(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        if self.request.dry_run {
            return self.done(
                StepKind::FollowLog,
                &format!("would follow {}", checked.log.display()),
            );
        }
        let mut tracker = ReplayTracker::new(self.client.continuity.segment_size);
        let target: Option<TargetTime> = self
            .request
            .target_time
            .as_deref()
            .and_then(|t| recovery_conf::parse_target_time(t).ok());
        let deadline = Instant::now() + self.request.replay_timeout;
        let mut offset = self.log_offset;
        let mut partial = String::new();
        let outcome = loop {
            if let Ok(mut file) = fs::File::open(&checked.log) {
                let _ = file.seek(SeekFrom::Start(offset));
                let mut reader = BufReader::new(file);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    offset += line.len() as u64;
                    if !line.ends_with('\n') {
                        partial.push_str(&line);
                        line.clear();
                        break;
                    }
                    let full = std::mem::take(&mut partial) + line.trim_end();
                    tracker.feed(&full);
                    self.driver.progress(StepKind::FollowLog, &full);
                    if let (Some(done), Some(ratio)) = (
                        tracker.last_restored(),
                        replay_ratio(
                            self.client,
                            tracker.last_restored(),
                            checked.archive_last.as_deref(),
                        ),
                    ) {
                        self.driver
                            .gauge(StepKind::FollowLog, ratio, &format!("replayed {done}"));
                    }
                    line.clear();
                }
            }
            if tracker.finished() {
                break tracker.outcome(
                    checked.archive_last.as_deref().unwrap_or(""),
                    target.as_ref(),
                );
            }
            if Instant::now() > deadline {
                return Err(fail(
                    StepKind::FollowLog,
                    format!(
                        "no end of recovery within {}; the server may still be replaying: see {}",
                        short_duration(self.request.replay_timeout),
                        checked.log.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let success = outcome.is_success();
        let text = outcome.to_string();
        self.summary.replay = Some(outcome);
        if !success {
            return Err(fail(StepKind::FollowLog, text));
        }
        self.done(StepKind::FollowLog, &text)
    }

    fn report(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        if self.request.dry_run {
            return self.done(StepKind::Report, "would query the server");
        }
        let socket_dir = setting(&self.request.settings, "unix_socket_directories")
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|| "/var/run/postgresql".into());
        let port = setting(&self.request.settings, "port").unwrap_or_else(|| "5432".into());
        let mut command = checked.user.command(checked.pg_bin.join("psql"));
        command
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                &socket_dir,
                "-p",
                &port,
                "-d",
                "postgres",
                "-c",
            ])
            .arg("select pg_is_in_recovery(), coalesce(pg_last_xact_replay_timestamp()::text, '')");
        let mut answer = String::new();
        for _ in 0..50 {
            if let Ok(text) = self.exec(StepKind::Report, command_clone(&command)) {
                answer = text;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut fields = answer.trim().split('|');
        self.summary.in_recovery = fields.next().map(|f| f == "t");
        self.summary.last_replayed_transaction =
            fields.next().filter(|f| !f.is_empty()).map(str::to_owned);
        if answer.is_empty() {
            return Err(fail(
                StepKind::Report,
                format!(
                    "the server does not answer on {socket_dir} port {port}; see {}",
                    checked.log.display()
                ),
            ));
        }
        let recovery = if self.summary.in_recovery == Some(true) {
            "still in recovery (paused at the target?)"
        } else {
            "out of recovery, accepting writes"
        };
        let last = self
            .summary
            .last_replayed_transaction
            .clone()
            .unwrap_or_else(|| "unknown".into());
        self.done(StepKind::Report, &format!("server answers: {recovery}; last replayed transaction at {last}. Set up fresh backups for this server."))
    }
}

/// The stop-old-instance step alone, as `run` does it after the preflight
/// (`major`: the backup's), journaled beside the data directory. Returns the journal's path.
pub fn stop_old_instance(
    request: &RestoreRequest,
    major: u32,
    driver: &mut dyn Driver,
) -> Result<PathBuf, RestoreError> {
    let mut journal = Journal::open(&request.data_dir, request.dry_run).map_err(|source| {
        RestoreError::Journal {
            path: Journal::path_for(&request.data_dir),
            source,
        }
    })?;
    stop_remote(request, major, driver, &mut journal)?;
    Ok(journal.path().to_owned())
}

/// Stops PostgreSQL on the client's old server over SSH, when configured and
/// confirmed. Never fails the restore: the old server is often gone (that is
/// why there is a restore), so unreachable, declined or refused is a skip
/// whose reason goes into the journal. A host key that does not check out
/// is called REFUSED: nothing was sent to that server.
fn stop_remote(
    request: &RestoreRequest,
    major: u32,
    driver: &mut dyn Driver,
    journal: &mut Journal,
) -> Result<(), RestoreError> {
    let step = StepKind::StopRemote;
    let mut record = |driver: &mut dyn Driver, outcome: Outcome, detail: &str| {
        journal
            .record(step.id(), outcome.clone(), detail, None)
            .map_err(|source| RestoreError::Journal {
                path: journal.path().to_owned(),
                source,
            })?;
        driver.step(step, outcome, detail);
        Ok(())
    };
    let Some(target) = &request.target else {
        return record(
            driver,
            Outcome::Skipped,
            "no target server configured for this client: make sure the old server is down (or name it under [clients.NAME.target] in the config)",
        );
    };
    let address = target.address();
    let command = target.stop_command_for(major);
    let question = format!("Stop PostgreSQL on {address} with `{command}`?");
    if request.dry_run {
        driver.progress(step, &format!("(dry run) would ask: {question}"));
        driver.command(&remote::ssh_command_text(target, &command));
        return record(
            driver,
            Outcome::DryRun,
            &format!("would stop PostgreSQL on {address} (not connected in a dry run)"),
        );
    }
    if !driver.confirm(&question) {
        return record(
            driver,
            Outcome::Skipped,
            &format!(
                "declined: PostgreSQL on {address} was not stopped; make sure it is down before the restored server takes its place"
            ),
        );
    }
    driver.command(&remote::ssh_command_text(target, &command));
    match remote::run_remote_blocking(target, &command) {
        Ok(output) => {
            let text = one_line(&(output.stdout + "\n" + &output.stderr));
            let said = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            record(
                driver,
                Outcome::Done,
                &format!("stopped PostgreSQL on {address}{said}"),
            )
        }
        Err(error) if error.is_host_key() => {
            let detail = format!(
                "REFUSED: {error}. Nothing was run on {address}: make sure the old server is down"
            );
            driver.progress(step, &detail);
            record(driver, Outcome::Skipped, &detail)
        }
        Err(error) => record(
            driver,
            Outcome::Skipped,
            &format!("not stopped: {error}; make sure the old server is down"),
        ),
    }
}

/// A command's output on one line for the journal, cut to a readable length.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match joined.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// How far replay is from the base backup's start to the archive's last segment.
fn replay_ratio(client: &Client, restored: Option<&str>, last: Option<&str>) -> Option<f64> {
    let seg_size = client.continuity.segment_size;
    let number = |name: &str| {
        crate::archive::wal::RawSegmentName::parse(name.get(..24)?)?
            .resolve(seg_size)
            .ok()
            .map(|id| id.segment.0)
    };
    let start = number(client.continuity.needed_from.as_deref()?)?;
    let (done, end) = (number(restored?)?, number(last?)?);
    Some(
        ((done.saturating_sub(start)) as f64 / (end.saturating_sub(start)).max(1) as f64)
            .clamp(0.0, 1.0),
    )
}

fn fail(step: StepKind, message: String) -> RestoreError {
    RestoreError::Step {
        step: step.id(),
        message,
    }
}

fn setting(settings: &[(String, String)], key: &str) -> Option<String> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn command_clone(command: &Command) -> Command {
    let mut clone = Command::new(command.get_program());
    clone.args(command.get_args());
    clone
}

/// The nearest existing folder at or above `path`.
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

fn remove(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Mode 0700, owned by the PostgreSQL user: what initdb makes, and what postgres insists on.
fn prepare_dir(dir: &Path, user: &PgUser) -> Result<(), String> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
    chown(dir, user)
}

fn chown(path: &Path, user: &PgUser) -> Result<(), String> {
    if fs::metadata(path).is_ok_and(|m| m.uid() == user.uid) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| format!("cannot give {} to {}: {e}", path.display(), user.name))
}

fn write_owned(path: &Path, bytes: &[u8], user: &PgUser, append: bool) -> Result<(), String> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    chown(path, user)
}

#[cfg(test)]
mod service_tests {
    use super::*;

    #[test]
    fn a_debian_cluster_is_found_by_its_data_directory() {
        let etc = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let cluster = etc.path().join("15").join("main");
        fs::create_dir_all(&cluster).unwrap();
        fs::write(
            cluster.join("postgresql.conf"),
            format!(
                "# comment\nport = 5432\ndata_directory = '{}'\t\t# use data in another directory\n",
                data.path().display()
            ),
        )
        .unwrap();
        assert_eq!(
            debian_cluster(etc.path(), 15, data.path()),
            Some("main".into())
        );
        assert_eq!(debian_cluster(etc.path(), 16, data.path()), None);
        assert_eq!(
            debian_cluster(etc.path(), 15, Path::new("/srv/other")),
            None
        );
    }

    fn entry(step: &str, outcome: Outcome) -> super::super::journal::Entry {
        super::super::journal::Entry {
            at: "2026-11-25T16:00:00Z".into(),
            step: step.into(),
            outcome,
            detail: String::new(),
            moved_aside_to: None,
        }
    }

    #[test]
    fn resume_counts_only_the_unfinished_attempt() {
        let finished = vec![
            entry("preflight", Outcome::Done),
            entry("unpack", Outcome::Done),
            entry("report", Outcome::Done),
        ];
        assert!(Resumed::from_journal(&finished).is_err());
        assert!(Resumed::from_journal(&[]).is_err());
        let mut interrupted = finished.clone();
        interrupted.extend([
            entry("preflight", Outcome::Done),
            entry("stop-remote", Outcome::Skipped),
            entry("clear", Outcome::Done),
            entry("unpack", Outcome::Started),
        ]);
        let resumed = Resumed::from_journal(&interrupted).unwrap();
        assert_eq!(
            resumed.done,
            vec![StepKind::Preflight, StepKind::StopRemote, StepKind::Clear]
        );
        assert!(
            !resumed.has(StepKind::Unpack),
            "an unpack that only started is redone"
        );
        interrupted.push(entry("rollback", Outcome::Done));
        assert!(
            Resumed::from_journal(&interrupted).is_err(),
            "rolled back: nothing to resume"
        );
    }

    #[test]
    fn placeholders_are_filled_and_quoted() {
        let line = fill_placeholders(
            "{pg_bin}/pg_ctl -D {data} -l {log} start # {major}",
            Path::new("/srv/my data"),
            Path::new("/var/log/pg.log"),
            15,
            Path::new("/usr/lib/postgresql/15/bin"),
        );
        assert_eq!(
            line,
            "/usr/lib/postgresql/15/bin/pg_ctl -D '/srv/my data' -l /var/log/pg.log start # 15"
        );
    }
}
