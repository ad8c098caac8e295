//! What can stop a restore, typed: a refusal before anything is touched
//! (`PreflightRefusal`, each naming the file, folder or version at fault with the
//! fix), a step that failed (`StepFailure`), a cancellation, or the journal.
//! The faces print these; color-eyre adds context at the edge.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use thiserror::Error;

use super::recovery_conf::{RecoveryConfError, TargetTimeError};
use super::replay::ReplayOutcome;
use super::unpack::UnpackError;
use crate::display::{human_bytes, short_duration};
use crate::pg::local::LocalError;

#[derive(Debug, Error)]
pub enum RestoreError {
    // The refusal and the failure are the message itself, not a cause to
    // repeat under it: no #[source] on either.
    #[error("preflight refused the restore: {0}")]
    Preflight(PreflightRefusal),
    #[error("{step}: {failure}")]
    Step {
        step: &'static str,
        failure: StepFailure,
    },
    #[error("cancelled at {0}: nothing further was changed")]
    Cancelled(&'static str),
    /// Ctrl-C while the restored server ran: it was stopped (fast: replay
    /// resumes from its last restartpoint) and the helper finished.
    #[error(
        "interrupted at {step}: {server}; `--resume` replays on from there, `--rollback` puts the old contents back"
    )]
    Interrupted { step: &'static str, server: String },
    #[error("journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
}

impl From<PreflightRefusal> for RestoreError {
    fn from(refusal: PreflightRefusal) -> RestoreError {
        RestoreError::Preflight(refusal)
    }
}

impl From<LocalError> for RestoreError {
    fn from(error: LocalError) -> RestoreError {
        RestoreError::Preflight(PreflightRefusal::Local(error))
    }
}

/// Why the preflight (or `--resume`) refused before anything was touched.
#[derive(Debug, Error)]
pub enum PreflightRefusal {
    #[error("--resume: cannot read the journal {path}: {source}")]
    JournalUnreadable { path: PathBuf, source: io::Error },
    #[error("the journal records no unfinished restore: nothing to resume (start a new restore)")]
    NothingToResume,
    #[error("{client} has no complete base backup (base.tar.gz and pg_wal.tar.gz)")]
    NoCompleteBackup { client: String },
    #[error(
        "the backup has a tablespace tarball ({tarball}): restoring tablespaces is not supported yet; unpack it by hand to the path in tablespace_map"
    )]
    Tablespace { tarball: String },
    #[error(
        "the archive's path {path} is not UTF-8: PostgreSQL's restore_command could not name it; rename the client's folder (and its archive_command) to restore it"
    )]
    PathNotUtf8 { path: String },
    #[error("PG_VERSION could not be read from base.tar.gz")]
    NoPgVersion,
    #[error(transparent)]
    Local(LocalError),
    #[error(
        "the backup is PostgreSQL {backup} but {pg_bin} is PostgreSQL {found}: a physical backup only restores onto the same major version; install PostgreSQL {backup} (--pg-bin), or restore on {backup} and move with pg_dumpall -c / psql (the tutorial's last section)"
    )]
    MajorMismatch {
        backup: u32,
        pg_bin: PathBuf,
        found: u32,
    },
    #[error("walwarden runs as another user than {user}: run it with sudo")]
    NotThatUser { user: String },
    /// A path the restore would write, move or delete touches the archive.
    #[error(transparent)]
    Archive(crate::store::guard::GuardError),
    #[error("{0} is not a directory")]
    DataDirNotADirectory(PathBuf),
    #[error(
        "{0} names its folder through '.' or '..': name the data directory plainly (its siblings hold the moved-aside data, the journal and the restore_command's plan and spool)"
    )]
    DataDirNotPlain(PathBuf),
    #[error(
        "{0} is a mount point: moving its contents aside would cross file systems; point --data-dir at a folder inside it"
    )]
    DataDirMountPoint(PathBuf),
    #[error(
        "{0} is neither empty nor a PostgreSQL data directory (no PG_VERSION): refusing to clear it"
    )]
    DataDirForeign(PathBuf),
    #[error(transparent)]
    Tarball(UnpackError),
    #[error("the tarball has an entry that would escape the data directory: {entry} ({reason})")]
    EscapingEntry { entry: String, reason: String },
    #[error(
        "{} has {} free; the backup unpacks to {} (+10% margin)",
        .folder.display(), human_bytes(*.free), human_bytes(*.needed)
    )]
    NoSpace {
        folder: PathBuf,
        free: u64,
        needed: u64,
    },
    #[error(
        "WAL needed to reach consistency is missing ({first} .. {last}): the base backup cannot be restored; take a new one"
    )]
    NotConsistent { first: String, last: String },
    #[error(
        "the WAL archive {wal_dir} is not readable by {user}: PostgreSQL would silently recover only to the end of the base backup. Fix, keeping clients apart: give the client's folder to a group only {user} is in (chgrp -R {user} on the client folder, chmod -R g+rX, and chmod g+s on base/ and wal/ so new files keep that group); never o+r, which opens it to every other client's user"
    )]
    ArchiveUnreadable { wal_dir: PathBuf, user: String },
    #[error("{0}")]
    Line(LineRefusal),
    #[error(
        "the PostgreSQL user {user} cannot run {exe}, the restore_command walwarden writes (`walwarden wal-get`). Fix: run walwarden from where {user} can execute it, e.g. the package's /usr/bin/walwarden or a copy in /usr/local/bin (mode 755)"
    )]
    HelperNotRunnable { exe: PathBuf, user: String },
    #[error(transparent)]
    HelperPlan(crate::ops::walget::WalGetError),
    #[error(transparent)]
    TargetTime(TargetTimeError),
    #[error(
        "--target-time {target} is before the base backup is consistent ({consistent}): PostgreSQL would refuse (requested recovery stop point is before consistent recovery point); choose a time inside the window {consistent} .. {end}"
    )]
    TargetBeforeWindow {
        target: String,
        consistent: String,
        end: String,
    },
    #[error(
        "--target-time {target} is after the archive's last WAL (the last segment arrived {last_arrival}; its last commit is at {last_commit}): there is nothing to replay up to it. Choose a time inside the window {consistent} .. {last_commit}, or leave --target-time out to restore everything"
    )]
    TargetAfterWindow {
        target: String,
        consistent: String,
        last_commit: String,
        last_arrival: String,
    },
    #[error(
        "the base backup's settings do not fit this host, so PostgreSQL would not start:\n{}\nrestore again with {}, or --force host-settings",
        .found.iter().map(|m| format!("  - {} = '{}' ({}): {}", m.key, m.value, m.from, m.why)).collect::<Vec<_>>().join("\n"),
        proposals(.found)
    )]
    HostSettings {
        found: Vec<super::host_settings::HostMismatch>,
    },
    #[error(
        "--set {key}=... would replace a setting the restore writes for its safety ({why}); add --force unsafe-settings if that is what you want"
    )]
    GuardedSetting { key: String, why: &'static str },
}

/// Why the settings a restore of this client needs on this host could not
/// be worked out (the wizard then starts with an empty settings field).
#[derive(Debug, Error)]
pub enum ProposalError {
    #[error("{client} has no base.tar.gz to read settings from")]
    NoBaseBackup { client: String },
    #[error("cannot read the base backup's settings: {0}")]
    Tarball(UnpackError),
}

/// The `--set` arguments that fix what was found.
fn proposals(found: &[super::host_settings::HostMismatch]) -> String {
    let seen: Vec<String> = super::host_settings::proposed_pairs(found)
        .into_iter()
        .map(|(key, value)| {
            if value.is_empty() || value.contains(char::is_whitespace) {
                format!("--set '{key}={value}'")
            } else {
                format!("--set {key}={value}")
            }
        })
        .collect();
    if seen.is_empty() {
        "the settings fixed".to_owned()
    } else {
        seen.join(" ")
    }
}

/// Why the line of WAL a restore would follow cannot be followed to where it was asked to go.
#[derive(Debug, Error)]
pub enum LineRefusal {
    #[error(
        "--timeline {timeline}: {why}; the base backup is on timeline {base}, and a restore can only follow timelines that left it after the backup began"
    )]
    TimelineOffLine {
        timeline: u32,
        base: u32,
        why: String,
    },
    #[error(
        "the newest WAL arrives on timeline {production}, which this base backup (timeline {base}) cannot reach: {why}. Take a new base backup of the server that archives it, or restore timeline {base} on purpose with --timeline {base}"
    )]
    ProductionOffLine {
        production: u32,
        base: u32,
        why: String,
    },
    #[error(
        "the line of WAL stops at {segment}: {why}; a restore to the end would replay only through {through} of {newest}. Restore to a --target-time before it ({before}), find the segment, or --force wal-line to restore what there is"
    )]
    Broken {
        segment: String,
        why: String,
        through: String,
        newest: String,
        before: String,
    },
}

/// Why a step failed once it had started.
#[derive(Debug, Error)]
pub enum StepFailure {
    /// A file-system call on `path` (`action`: "create", "delete", "chmod", "write", "sync").
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot move {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cannot give {path} to {user}: {source}")]
    Chown {
        path: PathBuf,
        user: String,
        source: io::Error,
    },
    #[error("cannot run {command}: {source}")]
    CannotRun { command: String, source: io::Error },
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("postmaster.pid is still there after the stop")]
    StillRunning,
    #[error("{0}; the data directory is incomplete: restore again, or roll back from the journal")]
    Unpack(UnpackError),
    #[error(transparent)]
    Sync(UnpackError),
    #[error(transparent)]
    TargetTime(#[from] TargetTimeError),
    #[error(transparent)]
    RecoveryConfig(#[from] RecoveryConfError),
    #[error(transparent)]
    WalGet(#[from] crate::ops::walget::WalGetError),
    #[error(
        "no end of recovery within {}; the server may still be replaying: see {}",
        short_duration(*.timeout), .log.display()
    )]
    ReplayTimeout { timeout: Duration, log: PathBuf },
    #[error("{0}")]
    Replay(Box<ReplayOutcome>),
    #[error(
        "the server is still in recovery though the restore went to the end: it was not promoted (a standby or a pause); see {}",
        .log.display()
    )]
    NotPromoted { log: PathBuf },
    #[error(
        "the restored server's last replayed transaction is at {found}, but the archive's last commit on the line is at {expected}: replay followed another history or stopped early"
    )]
    WrongEnd { expected: String, found: String },
    #[error("the server does not answer on {socket_dir} port {port}; see {}", .log.display())]
    NoAnswer {
        socket_dir: String,
        port: String,
        log: PathBuf,
    },
}

impl StepFailure {
    /// A failed file-system call, as a closure for `map_err`.
    pub fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| StepFailure::Io {
            action,
            path,
            source,
        }
    }
}

/// Why a rollback could not put the old contents back.
#[derive(Debug, Error)]
pub enum RollbackError {
    #[error("cannot read the journal {path}: {source}")]
    JournalUnreadable { path: PathBuf, source: io::Error },
    #[error("{0} records no unfinished restore that moved contents aside: nothing to roll back")]
    NothingToRollBack(PathBuf),
    #[error("the moved-aside folder {0} is gone: nothing to put back")]
    AsideGone(PathBuf),
    #[error("a server may be running on {0} (postmaster.pid): stop it first")]
    ServerRunning(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot move {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Journal(io::Error),
    #[error(transparent)]
    Archive(crate::store::guard::GuardError),
}
