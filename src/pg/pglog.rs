//! The restored server's log, line by line: what each line means
//! ([`classify`]) and where replay got to ([`ReplayTracker`]). Pure: the
//! caller reads the file and feeds lines.
//!
//! Lines come with PostgreSQL's prefix (`2026-11-25 13:13:53.385 UTC [9541] LOG:  `,
//! Debian's `%m [%p] %q%u@%d ` adds `user@db ` for sessions) or bare: the
//! stderr of restore_command (`gzip: ...`, `cp: ...`, `sh: 1: ...`) goes into
//! the same file without a prefix. English messages (`lc_messages = C` or `en`)
//! only.
//!
//! The trap this module exists for: when the archive is unreadable or has a
//! gap, PostgreSQL logs no error of its own. It recovers as far as it can,
//! picks a new timeline and opens for writes. Only comparing where replay
//! ended with where the archive ends tells a complete restore from a partial
//! one, so [`ReplayTracker::outcome`] never calls a restore a success without
//! that comparison.

use std::fmt;

use crate::archive::wal::{Lsn, RawSegmentName, SegmentId, Timeline, WalFileKind};
use crate::ops::restore::recovery_conf::TargetTime;

/// A known problem: a stable code, what happened, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    pub code: &'static str,
    pub summary: String,
    pub fix: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]; fix: {}", self.summary, self.code, self.fix)
    }
}

/// The diagnosis codes, stable for scripts and the catalogue.
pub mod codes {
    pub const ARCHIVE_PERMISSION: &str = "archive-permission";
    pub const DATA_PERMISSION: &str = "data-permission";
    pub const RECOVERY_CONF_UNSUPPORTED: &str = "recovery-conf-unsupported";
    pub const NO_RECOVERY_SIGNAL: &str = "no-recovery-signal";
    pub const CHECKPOINT_MISSING: &str = "checkpoint-missing";
    pub const NO_VALID_CHECKPOINT: &str = "no-valid-checkpoint";
    pub const BACKUP_WAL_MISSING: &str = "backup-wal-missing";
    pub const TIMELINE_NOT_CHILD: &str = "timeline-not-child";
    pub const WAL_INVALID: &str = "wal-invalid";
    pub const WAL_GAP: &str = "wal-gap";
    pub const ARCHIVE_EMPTY: &str = "archive-empty";
    pub const DISK_FULL: &str = "disk-full";
    pub const TARGET_BEFORE_CONSISTENCY: &str = "target-before-consistency";
    pub const TARGET_NOT_REACHED: &str = "target-not-reached";
    pub const BAD_TARGET_TIME: &str = "bad-target-time";
    pub const BAD_PARAMETER_VALUE: &str = "bad-parameter-value";
    pub const UNKNOWN_PARAMETER: &str = "unknown-parameter";
    pub const CONFIG_SYNTAX: &str = "config-syntax";
    pub const CONFIG_ERRORS: &str = "config-errors";
    pub const WRONG_MAJOR: &str = "wrong-major";
    pub const DATA_DIR_MODE: &str = "data-dir-mode";
    pub const ALREADY_RUNNING: &str = "already-running";
    pub const RESTORE_COMMAND_FAILED: &str = "restore-command-failed";
    pub const RESTORED_SERVER_ARCHIVING: &str = "restored-server-archiving";
    pub const STARTUP_FAILED: &str = "startup-failed";
    pub const SERVER_FATAL: &str = "server-fatal";
    pub const STOPPED: &str = "stopped-during-recovery";
    pub const EARLY_STOP: &str = "early-stop";
    pub const BAD_ARCHIVE_END: &str = "bad-archive-end";
    /// Refusals of `walwarden wal-get` (see [`crate::pg::walget_line`]).
    pub const FOREIGN_SEGMENT: &str = "foreign-segment";
    pub const CORRUPT_SEGMENT: &str = "corrupt-segment";
    pub const MISNAMED_SEGMENT: &str = "misnamed-segment";
}

fn diagnosis(code: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Diagnosis {
    Diagnosis {
        code,
        summary: summary.into(),
        fix: fix.into(),
    }
}

/// What one log line means for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A new start of the server in the same (appended) log file.
    ServerStarting,
    /// `starting archive recovery` / `starting point-in-time recovery to ...`:
    /// recovery.signal (or recovery.conf) was seen and restore_command is used.
    ArchiveRecoveryStarting,
    /// `restored log file "<segment>" from archive`.
    Progress {
        restored_segment: String,
    },
    /// `restored log file "00000002.history" from archive`.
    RestoredHistory {
        file: String,
    },
    RedoStarts {
        lsn: Lsn,
    },
    Consistent {
        lsn: Lsn,
    },
    /// `recovery stopping before commit of transaction ..., time ...`: the target was reached.
    RecoveryStopping {
        detail: String,
    },
    RedoDone {
        lsn: Lsn,
    },
    LastTransaction {
        time_text: String,
    },
    /// `invalid record length at ...`, `invalid magic number ...` and the like:
    /// where PostgreSQL found the end of the WAL it has. Normal at the end of
    /// the WAL; a damaged segment when replay stopped before the archive's end.
    EndOfWal {
        detail: String,
    },
    NewTimeline(u32),
    RecoveryComplete,
    /// `database system is ready to accept connections` (read-write, after promotion).
    ReadyToAcceptConnections,
    /// `pausing at the end of recovery` (13+) or `recovery has paused` (10-12).
    PausedAtTarget,
    /// `database system is shut down`.
    ShutDown,
    /// restore_command could not find a WAL file (`gzip:`/`cp:` `No such file or
    /// directory`). Normal for `.history` probes and for the segment after the
    /// archive's last; anything else is a gap, which only the caller (knowing
    /// the archive) can tell.
    NormalMiss {
        missing_file: String,
    },
    Failure(Diagnosis),
    Other,
}

/// A server message level, as PostgreSQL prints it before `:  `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Log,
    Error,
    Fatal,
    Panic,
    /// DETAIL, HINT, CONTEXT, STATEMENT, QUERY, LOCATION: more about the line before.
    Continuation,
}

/// Who wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Server(Severity),
    /// A program run by restore_command or archive_command (`gzip`, `cp`, `sh`...).
    Tool(&'a str),
    Unknown,
}

/// A log line split into its writer and message (the prefix dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub source: Source<'a>,
    pub message: &'a str,
}

const SEVERITIES: &[(&str, Severity)] = &[
    ("LOG", Severity::Log),
    ("FATAL", Severity::Fatal),
    ("PANIC", Severity::Panic),
    ("ERROR", Severity::Error),
    ("WARNING", Severity::Warning),
    ("DETAIL", Severity::Continuation),
    ("HINT", Severity::Continuation),
    ("CONTEXT", Severity::Continuation),
    ("STATEMENT", Severity::Continuation),
    ("QUERY", Severity::Continuation),
    ("LOCATION", Severity::Continuation),
    ("NOTICE", Severity::Notice),
    ("INFO", Severity::Info),
    ("DEBUG", Severity::Debug),
    ("DEBUG1", Severity::Debug),
    ("DEBUG2", Severity::Debug),
    ("DEBUG3", Severity::Debug),
    ("DEBUG4", Severity::Debug),
    ("DEBUG5", Severity::Debug),
];

const TOOLS: &[&str] = &[
    "gzip", "gunzip", "zcat", "pigz", "cp", "cat", "sh", "bash", "dash", "test", "mv", "scp",
    "ssh", "rsync",
];

/// Splits `line` into who wrote it and the message. Whatever the
/// `log_line_prefix`, the server's part starts at the first `LEVEL:  ` (two spaces)
/// that stands at the start or after a space.
pub fn split_line(line: &str) -> LogLine<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut from = 0;
    while let Some(found) = line[from..].find(":  ") {
        let colon = from + found;
        let word_start = line[..colon].rfind(' ').map_or(0, |i| i + 1);
        let word = &line[word_start..colon];
        if let Some((_, severity)) = SEVERITIES.iter().find(|(name, _)| *name == word) {
            return LogLine {
                source: Source::Server(*severity),
                message: &line[colon + 3..],
            };
        }
        from = colon + 1;
    }
    if let Some((program, rest)) = line.split_once(": ") {
        let name = program.rsplit('/').next().unwrap_or(program);
        if TOOLS.contains(&name) {
            return LogLine {
                source: Source::Tool(name),
                message: rest,
            };
        }
    }
    LogLine {
        source: Source::Unknown,
        message: line.trim(),
    }
}

/// What `line` means for a restore.
pub fn classify(line: &str) -> LineKind {
    let parsed = split_line(line);
    match parsed.source {
        Source::Server(Severity::Continuation) => LineKind::Other,
        Source::Server(severity) => classify_server(severity, parsed.message),
        Source::Tool(tool) => classify_tool(tool, parsed.message, line),
        Source::Unknown => crate::pg::walget_line::classify(line).unwrap_or(LineKind::Other),
    }
}

fn quoted(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

fn lsn_after(message: &str, prefix: &str) -> Option<Lsn> {
    let rest = message.strip_prefix(prefix)?;
    let token = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .next()?;
    Lsn::parse(token)
}

fn classify_server(severity: Severity, m: &str) -> LineKind {
    use codes::*;
    // Progress and milestones first: they are the bulk of the log.
    if let Some(name) = m.strip_prefix("restored log file ").and_then(quoted) {
        return match WalFileKind::classify(name) {
            WalFileKind::TimelineHistory { .. } => LineKind::RestoredHistory {
                file: name.to_owned(),
            },
            _ => LineKind::Progress {
                restored_segment: name.to_owned(),
            },
        };
    }
    if let Some(lsn) = lsn_after(m, "redo starts at ") {
        return LineKind::RedoStarts { lsn };
    }
    if let Some(lsn) = lsn_after(m, "consistent recovery state reached at ") {
        return LineKind::Consistent { lsn };
    }
    if let Some(lsn) = lsn_after(m, "redo done at ") {
        return LineKind::RedoDone { lsn };
    }
    if let Some(time) = m.strip_prefix("last completed transaction was at log time ") {
        return LineKind::LastTransaction {
            time_text: time.trim().to_owned(),
        };
    }
    if m.starts_with("recovery stopping ") {
        return LineKind::RecoveryStopping {
            detail: m.to_owned(),
        };
    }
    if let Some(Ok(tli)) = m
        .strip_prefix("selected new timeline ID: ")
        .map(|t| t.trim().parse())
    {
        return LineKind::NewTimeline(tli);
    }
    if m == "archive recovery complete" {
        return LineKind::RecoveryComplete;
    }
    if m == "database system is ready to accept connections" {
        return LineKind::ReadyToAcceptConnections;
    }
    if m == "pausing at the end of recovery" || m == "recovery has paused" {
        return LineKind::PausedAtTarget;
    }
    if m == "database system is shut down" {
        return LineKind::ShutDown;
    }
    if m.starts_with("starting PostgreSQL ") {
        return LineKind::ServerStarting;
    }
    if m == "starting archive recovery"
        || m.starts_with("starting point-in-time recovery to ")
        || m == "entering standby mode"
    {
        return LineKind::ArchiveRecoveryStarting;
    }
    if m.starts_with("invalid record length at ")
        || m.starts_with("invalid magic number ")
        || m.starts_with("invalid resource manager ID ")
        || m.starts_with("incorrect resource manager data checksum ")
        || m.starts_with("record with incorrect prev-link ")
        || m.starts_with("invalid record offset at ")
        || m.starts_with("unexpected pageaddr ")
        || m.starts_with("contrecord is requested by ")
        || m.starts_with("invalid contrecord length ")
        || m.starts_with("missing contrecord at ")
    {
        return LineKind::EndOfWal {
            detail: m.to_owned(),
        };
    }

    // Problems.
    let fail = |code, summary: String, fix: &str| LineKind::Failure(diagnosis(code, summary, fix));
    if m.starts_with("using recovery command file \"recovery.conf\" is not supported") {
        return fail(
            RECOVERY_CONF_UNSUPPORTED,
            "PostgreSQL 12 and later refuse recovery.conf and do not start".into(),
            "remove DATA/recovery.conf, create an empty DATA/recovery.signal and put restore_command \
             (and any recovery_target_* setting) in DATA/postgresql.auto.conf",
        );
    }
    if m.starts_with("could not locate required checkpoint record") {
        return fail(
            CHECKPOINT_MISSING,
            "the checkpoint named in backup_label is neither in pg_wal nor fetched by restore_command".into(),
            "extract pg_wal.tar.gz into DATA/pg_wal (not into DATA), create DATA/recovery.signal \
             (12+), and check that restore_command can read the archive as postgres",
        );
    }
    if m.starts_with("could not locate a valid checkpoint record") {
        return fail(
            NO_VALID_CHECKPOINT,
            "no valid checkpoint record: backup_label is missing or pg_wal is empty".into(),
            "restore again from the base backup: keep its backup_label, extract pg_wal.tar.gz into \
             DATA/pg_wal, and never delete backup_label to make the server start",
        );
    }
    if m.starts_with("WAL ends before end of online backup")
        || m.starts_with("WAL ends before consistent recovery point")
    {
        return fail(
            BACKUP_WAL_MISSING,
            format!("{m}: the WAL written during the base backup did not all arrive"),
            "extract pg_wal.tar.gz into DATA/pg_wal and check the archive holds every segment from \
             the backup's START to its STOP WAL location (the .backup file in the archive)",
        );
    }
    if m.starts_with("requested timeline ") && m.contains("is not a child of this server's history")
    {
        return fail(
            TIMELINE_NOT_CHILD,
            format!(
                "{m}: the archive's .history files lead to a timeline this base backup is not part of"
            ),
            "set recovery_target_timeline = 'current' (or the backup's timeline) with --set, or \
             restore from a base backup taken on that timeline",
        );
    }
    if m.starts_with("requested recovery stop point is before consistent recovery point") {
        return fail(
            TARGET_BEFORE_CONSISTENCY,
            "the target time is before this base backup became consistent (its end)".into(),
            "choose a target after the base backup's STOP time, or restore from an older base backup",
        );
    }
    if m.starts_with("recovery ended before configured recovery target was reached") {
        return fail(
            TARGET_NOT_REACHED,
            "WAL replay ended before the recovery target time".into(),
            "choose a target inside the archive's window, and check the archive for gaps or \
             files postgres cannot read",
        );
    }
    if m.starts_with("invalid value for parameter \"recovery_target_time\"") {
        return fail(
            BAD_TARGET_TIME,
            format!("PostgreSQL refused the target time: {m}"),
            "write it with a numeric offset, e.g. '2026-11-25 13:28:18+00' (zone names and Z are \
             not understood at start-up)",
        );
    }
    if m.starts_with("invalid value for parameter ") {
        return fail(
            BAD_PARAMETER_VALUE,
            m.to_owned(),
            "correct that setting in DATA/postgresql.auto.conf (or the --set value)",
        );
    }
    if m.starts_with("unrecognized configuration parameter ") {
        return fail(
            UNKNOWN_PARAMETER,
            m.to_owned(),
            "remove or rename that setting; on 10 and 11 recovery settings belong in recovery.conf, \
             on 12+ standby_mode is replaced by standby.signal",
        );
    }
    if m.starts_with("syntax error in file ") {
        return fail(
            CONFIG_SYNTAX,
            m.to_owned(),
            "fix the quoting on that line: inside '...' write '' for a quote and \\\\ for a backslash",
        );
    }
    if m.starts_with("configuration file ") && m.contains(" contains errors") {
        return fail(
            CONFIG_ERRORS,
            m.to_owned(),
            "see the lines before it for the bad setting",
        );
    }
    if m.starts_with("database files are incompatible with server") {
        return fail(
            WRONG_MAJOR,
            "the base backup is from another PostgreSQL major version".into(),
            "restore with the same major version as the backup (PG_VERSION in the data directory)",
        );
    }
    if m.starts_with("data directory ")
        && (m.contains("has invalid permissions") || m.contains("has wrong ownership"))
    {
        return fail(
            DATA_DIR_MODE,
            m.to_owned(),
            "chown -R postgres:postgres DATA; chmod 700 DATA",
        );
    }
    if m.starts_with("lock file \"postmaster.pid\" already exists") {
        return fail(
            ALREADY_RUNNING,
            "a server already runs on this data directory, or a stale postmaster.pid was restored"
                .into(),
            "stop that server, or remove DATA/postmaster.pid if no postgres process uses it",
        );
    }
    if m.starts_with("could not restore file ") {
        return fail(
            RESTORE_COMMAND_FAILED,
            format!("restore_command could not run: {m}"),
            "run the restore_command by hand as postgres (gunzip installed? shell quoting?)",
        );
    }
    if m.contains("No space left on device") {
        return fail(
            DISK_FULL,
            format!("the disk is full: {m}"),
            "free space on the data directory's file system (df -h DATA) and restore again",
        );
    }
    if m.starts_with("archive command failed") || m.starts_with("archiving write-ahead log file ") {
        return fail(
            RESTORED_SERVER_ARCHIVING,
            "the restored server runs archive_command into the client's archive".into(),
            "set archive_mode = off in DATA/postgresql.auto.conf (walwarden does) until fresh backups are set up",
        );
    }
    if m.starts_with("startup process (PID ")
        && (m.contains("exited with exit code") || m.contains("was terminated by signal"))
    {
        return fail(
            STARTUP_FAILED,
            format!("the startup process failed: {m}"),
            "see the FATAL line before it",
        );
    }
    match severity {
        Severity::Fatal | Severity::Panic if !benign_fatal(m) => {
            fail(SERVER_FATAL, m.to_owned(), "see the log lines around it")
        }
        _ => LineKind::Other,
    }
}

/// FATALs of client sessions that say nothing about recovery.
fn benign_fatal(m: &str) -> bool {
    m.starts_with("the database system is starting up")
        || m.starts_with("the database system is not yet accepting connections")
        || m.starts_with("the database system is shutting down")
        || m.starts_with("terminating connection due to administrator command")
        || m.starts_with("password authentication failed")
        || m.starts_with("no pg_hba.conf entry")
        || (m.starts_with("role ") && m.ends_with("does not exist"))
        || (m.starts_with("database ") && m.ends_with("does not exist"))
}

fn classify_tool(tool: &str, message: &str, line: &str) -> LineKind {
    use codes::*;
    let is_restore_target = line.contains("RECOVERYXLOG") || line.contains("RECOVERYHISTORY");
    if line.contains("Permission denied") {
        if message.contains("cannot create") && !is_restore_target {
            return LineKind::Failure(diagnosis(
                RESTORED_SERVER_ARCHIVING,
                format!(
                    "the restored server runs archive_command into the client's archive: {tool}: {message}"
                ),
                "set archive_mode = off in DATA/postgresql.auto.conf (walwarden does) until fresh backups are set up",
            ));
        }
        if is_restore_target {
            return LineKind::Failure(diagnosis(
                DATA_PERMISSION,
                format!("restore_command cannot write into the data directory: {tool}: {message}"),
                "chown -R postgres:postgres DATA; chmod 700 DATA",
            ));
        }
        return LineKind::Failure(diagnosis(
            ARCHIVE_PERMISSION,
            format!("postgres cannot read the WAL archive: {tool}: {message}"),
            "give the archive to the PostgreSQL OS user (chown -R postgres:postgres WAL_DIR; \
             chmod 700 WAL_DIR; chmod 600 WAL_DIR/*) and restore again",
        ));
    }
    if line.contains("No space left on device") {
        return LineKind::Failure(diagnosis(
            DISK_FULL,
            format!("the disk is full: {tool}: {message}"),
            "free space on the data directory's file system (df -h DATA) and restore again",
        ));
    }
    if let Some(missing_file) = line
        .contains("No such file or directory")
        .then(|| wal_file_in(line))
        .flatten()
    {
        return LineKind::NormalMiss { missing_file };
    }
    if message.contains("not found")
        || message.contains("Syntax error")
        || message.contains("syntax error")
    {
        return LineKind::Failure(diagnosis(
            RESTORE_COMMAND_FAILED,
            format!("restore_command is broken: {tool}: {message}"),
            "run the restore_command by hand as postgres (gunzip installed? shell quoting?)",
        ));
    }
    LineKind::Other
}

/// The WAL file a tool complains about, without `.gz`: the last path
/// component before the error text, quotes stripped.
fn wal_file_in(line: &str) -> Option<String> {
    let before = &line[..line.rfind(": ")?];
    let component = before.rsplit('/').next()?;
    let name = component
        .trim_matches(|c: char| matches!(c, '\'' | '"' | '‘' | '’' | '`') || c.is_whitespace());
    let name = name.rsplit(' ').next()?;
    let name = name.trim_matches(|c: char| matches!(c, '\'' | '"' | '‘' | '’' | '`'));
    match WalFileKind::classify(name) {
        WalFileKind::Other | WalFileKind::InFlight { .. } => None,
        _ => Some(name.strip_suffix(".gz").unwrap_or(name).to_owned()),
    }
}

/// How a restore went, once its log says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No end of recovery in the log yet.
    Running,
    /// Replayed to the archive's last segment (or to the target) and promoted.
    Succeeded,
    /// Stopped at the target, read-only; `select pg_wal_replay_resume()` promotes.
    PausedAtTarget,
    /// Replay ended before the archive's last segment and the server opened
    /// anyway (PostgreSQL logs no error for this): the data is incomplete.
    EarlyStop {
        reached: Option<String>,
        archive_last: String,
        cause: Diagnosis,
    },
    /// The server refused to start or stopped; `cause` when the log shows why
    /// WAL ran out (for a target that was not reached).
    Failed {
        diagnosis: Diagnosis,
        cause: Option<Diagnosis>,
    },
}

/// What the log says about a restore: the verdict and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    pub verdict: Verdict,
    /// The furthest segment replay reached (restored, or holding the redo-done LSN).
    pub last_segment: Option<String>,
    pub consistent_at: Option<Lsn>,
    pub redo_done: Option<Lsn>,
    pub new_timeline: Option<u32>,
    pub last_transaction: Option<String>,
    /// Every problem seen on the way (first of each code), for the report.
    pub evidence: Vec<Diagnosis>,
}

impl ReplayOutcome {
    /// Replay finished as asked: the whole archive, or paused at the target.
    pub fn is_success(&self) -> bool {
        matches!(self.verdict, Verdict::Succeeded | Verdict::PausedAtTarget)
    }

    /// The diagnosis to show when it is not a success.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match &self.verdict {
            Verdict::EarlyStop { cause, .. } => Some(cause),
            Verdict::Failed { diagnosis, cause } => Some(cause.as_ref().unwrap_or(diagnosis)),
            _ => None,
        }
    }
}

impl fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reached = self.last_segment.as_deref().unwrap_or("no segment");
        match &self.verdict {
            Verdict::Running => write!(f, "replaying: reached {reached}")?,
            Verdict::Succeeded => write!(f, "replayed to {reached}")?,
            Verdict::PausedAtTarget => write!(
                f,
                "paused at the target after {reached}, read-only: check the data, then \
                 `select pg_wal_replay_resume()` to promote"
            )?,
            Verdict::EarlyStop {
                archive_last,
                cause,
                ..
            } => {
                return write!(
                    f,
                    "replay STOPPED EARLY at {reached} but the archive goes to {archive_last}; \
                     PostgreSQL opened anyway with incomplete data: {cause}"
                );
            }
            Verdict::Failed { diagnosis, cause } => {
                write!(f, "{diagnosis}")?;
                if let Some(cause) = cause {
                    write!(f, "; likely cause: {cause}")?;
                }
                return Ok(());
            }
        }
        if let Some(lsn) = self.redo_done {
            write!(f, " (redo done at {lsn})")?;
        }
        if let Some(tli) = self.new_timeline {
            write!(f, ", new timeline {tli}")?;
        }
        if let Some(time) = &self.last_transaction {
            write!(f, ", last transaction at {time}")?;
        }
        Ok(())
    }
}

/// Follows a restore's log: feed every line in order (from the start of the
/// restore, or the whole file: a `starting PostgreSQL` line starts over).
#[derive(Debug, Clone)]
pub struct ReplayTracker {
    seg_size: u32,
    archive_recovery: bool,
    last_restored: Option<String>,
    restored_segments: usize,
    redo_start: Option<Lsn>,
    consistent: Option<Lsn>,
    stopping: Option<String>,
    redo_done: Option<Lsn>,
    last_transaction: Option<String>,
    end_of_wal: Option<String>,
    new_timeline: Option<u32>,
    paused: bool,
    complete: bool,
    ready: bool,
    shut_down: bool,
    fatal: Option<Diagnosis>,
    pending_fatal: Option<Diagnosis>,
    misses: Vec<String>,
    evidence: Vec<Diagnosis>,
}

impl Default for ReplayTracker {
    fn default() -> Self {
        ReplayTracker::new(crate::archive::wal::DEFAULT_SEG_SIZE)
    }
}

const MAX_MISSES: usize = 64;

impl ReplayTracker {
    /// `seg_size`: the cluster's WAL segment size (16 MiB unless initdb chose another).
    pub fn new(seg_size: u32) -> ReplayTracker {
        ReplayTracker {
            seg_size,
            archive_recovery: false,
            last_restored: None,
            restored_segments: 0,
            redo_start: None,
            consistent: None,
            stopping: None,
            redo_done: None,
            last_transaction: None,
            end_of_wal: None,
            new_timeline: None,
            paused: false,
            complete: false,
            ready: false,
            shut_down: false,
            fatal: None,
            pending_fatal: None,
            misses: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// Takes one line; returns what it meant.
    pub fn feed(&mut self, line: &str) -> LineKind {
        let kind = classify(line);
        match &kind {
            LineKind::ServerStarting => *self = ReplayTracker::new(self.seg_size),
            LineKind::ArchiveRecoveryStarting => self.archive_recovery = true,
            LineKind::Progress { restored_segment } => {
                self.last_restored = Some(restored_segment.clone());
                self.restored_segments += 1;
            }
            LineKind::RestoredHistory { .. } | LineKind::Other => {}
            LineKind::RedoStarts { lsn } => self.redo_start = Some(*lsn),
            LineKind::Consistent { lsn } => self.consistent = Some(*lsn),
            LineKind::RecoveryStopping { detail } => self.stopping = Some(detail.clone()),
            LineKind::RedoDone { lsn } => {
                self.redo_done = Some(*lsn);
                self.paused = false;
            }
            LineKind::LastTransaction { time_text } => {
                self.last_transaction = Some(time_text.clone())
            }
            LineKind::EndOfWal { detail } => self.end_of_wal = Some(detail.clone()),
            LineKind::NewTimeline(tli) => self.new_timeline = Some(*tli),
            LineKind::RecoveryComplete => self.complete = true,
            LineKind::ReadyToAcceptConnections => self.ready = true,
            LineKind::PausedAtTarget => self.paused = true,
            LineKind::ShutDown => self.shut_down = true,
            LineKind::NormalMiss { missing_file } => {
                if self.misses.len() < MAX_MISSES && !self.misses.contains(missing_file) {
                    self.misses.push(missing_file.clone());
                }
            }
            LineKind::Failure(d) => self.failure(line, d.clone()),
        }
        kind
    }

    fn failure(&mut self, line: &str, d: Diagnosis) {
        use codes::*;
        let severity = match split_line(line).source {
            Source::Server(severity) => Some(severity),
            _ => None,
        };
        let ends_start = matches!(severity, Some(Severity::Fatal | Severity::Panic));
        if d.code == STARTUP_FAILED {
            if self.fatal.is_none() {
                self.fatal = Some(self.pending_fatal.take().unwrap_or(d));
            }
        } else if d.code == SERVER_FATAL && severity == Some(Severity::Fatal) {
            // A session's FATAL says nothing until the startup process fails too.
            self.pending_fatal.get_or_insert(d);
        } else if ends_start {
            if self.fatal.is_none() {
                let specific = if d.code == CONFIG_ERRORS {
                    self.evidence
                        .iter()
                        .find(|e| {
                            matches!(
                                e.code,
                                BAD_TARGET_TIME
                                    | BAD_PARAMETER_VALUE
                                    | UNKNOWN_PARAMETER
                                    | CONFIG_SYNTAX
                            )
                        })
                        .cloned()
                } else {
                    None
                };
                self.fatal = Some(specific.unwrap_or(d));
            }
        } else if !self.evidence.iter().any(|e| e.code == d.code) {
            self.evidence.push(d);
        }
    }

    /// The log reached an end state: open for writes, paused at the target,
    /// failed, or shut down.
    pub fn finished(&self) -> bool {
        self.fatal.is_some() || self.paused || self.ready || self.shut_down
    }

    pub fn last_restored(&self) -> Option<&str> {
        self.last_restored.as_deref()
    }

    pub fn consistent_at(&self) -> Option<Lsn> {
        self.consistent
    }

    pub fn redo_done(&self) -> Option<Lsn> {
        self.redo_done
    }

    pub fn new_timeline(&self) -> Option<u32> {
        self.new_timeline
    }

    /// The verdict, judged against the archive's last segment (on the timeline
    /// restored) and the target, if one was set. Without a target, replay
    /// must reach `archive_last_segment` for a success.
    pub fn outcome(
        &self,
        archive_last_segment: &str,
        target: Option<&TargetTime>,
    ) -> ReplayOutcome {
        use codes::*;
        let archive_last = RawSegmentName::parse(archive_last_segment);
        let reached = self.reached(archive_last);
        let verdict = if let Some(fatal) = &self.fatal {
            let cause = match fatal.code {
                TARGET_NOT_REACHED | BACKUP_WAL_MISSING | CHECKPOINT_MISSING => {
                    self.cause_of_missing_wal(reached, archive_last)
                }
                _ => None,
            };
            Verdict::Failed {
                diagnosis: fatal.clone(),
                cause,
            }
        } else if self.paused {
            Verdict::PausedAtTarget
        } else if !(self.ready || self.complete) {
            if self.shut_down {
                Verdict::Failed {
                    diagnosis: diagnosis(
                        STOPPED,
                        "the server stopped before recovery finished",
                        "start it again to let replay continue, or restore again",
                    ),
                    cause: None,
                }
            } else {
                Verdict::Running
            }
        } else if !self.archive_recovery {
            Verdict::Failed {
                diagnosis: diagnosis(
                    NO_RECOVERY_SIGNAL,
                    "PostgreSQL did crash recovery from pg_wal only: no recovery.signal (or \
                     recovery.conf), so restore_command never ran and the data ends with the base backup",
                    "stop this server and restore again with DATA/recovery.signal (12+) or \
                     DATA/recovery.conf (10, 11) in place; do not keep it: it stays on the old \
                     timeline and its WAL collides with names in the archive",
                ),
                cause: None,
            }
        } else if target.is_some() {
            if self.stopping.is_some() {
                Verdict::Succeeded
            } else {
                // PostgreSQL 12 and older promote silently when WAL ends first.
                Verdict::Failed {
                    diagnosis: diagnosis(
                        TARGET_NOT_REACHED,
                        "WAL replay ended before the recovery target time",
                        "choose a target inside the archive's window, and check the archive for \
                         gaps or files postgres cannot read",
                    ),
                    cause: self.cause_of_missing_wal(reached, archive_last),
                }
            }
        } else {
            match archive_last {
                None => Verdict::Failed {
                    diagnosis: diagnosis(
                        BAD_ARCHIVE_END,
                        format!("cannot judge the restore: {archive_last_segment:?} is not a WAL segment name"),
                        "pass the archive's last segment on the restored timeline",
                    ),
                    cause: None,
                },
                Some(last) if reached.is_some_and(|r| position(r) >= position(last)) => Verdict::Succeeded,
                Some(last) => Verdict::EarlyStop {
                    reached: reached.map(|r| r.to_string()),
                    archive_last: last.to_string(),
                    cause: self.cause_of_missing_wal(reached, archive_last).unwrap_or_else(|| {
                        diagnosis(
                            EARLY_STOP,
                            "replay stopped before the archive's last segment and the log does not say why",
                            "compare the archive with the segments restored (gzip -t each one) and restore again",
                        )
                    }),
                },
            }
        };
        ReplayOutcome {
            verdict,
            last_segment: reached.map(|r| r.to_string()),
            consistent_at: self.consistent,
            redo_done: self.redo_done,
            new_timeline: self.new_timeline,
            last_transaction: self.last_transaction.clone(),
            evidence: self.evidence.clone(),
        }
    }

    /// The furthest segment replay reached: the last one restored, or the one
    /// holding the redo-done LSN (which may have come from pg_wal), whichever is later.
    fn reached(&self, archive_last: Option<RawSegmentName>) -> Option<RawSegmentName> {
        let restored = self
            .last_restored
            .as_deref()
            .and_then(RawSegmentName::parse);
        let timeline = restored.or(archive_last).map_or(1, |r| r.timeline);
        let done = self.redo_done.map(|lsn| {
            SegmentId {
                timeline: Timeline(timeline),
                segment: lsn.segment(self.seg_size),
            }
            .raw(self.seg_size)
        });
        match (restored, done) {
            (Some(r), Some(d)) => Some(if position(d) > position(r) { d } else { r }),
            (r, d) => r.or(d),
        }
    }

    /// Why WAL ran out before the archive's end, from what restore_command said.
    fn cause_of_missing_wal(
        &self,
        reached: Option<RawSegmentName>,
        archive_last: Option<RawSegmentName>,
    ) -> Option<Diagnosis> {
        use codes::*;
        for code in [
            FOREIGN_SEGMENT,
            CORRUPT_SEGMENT,
            MISNAMED_SEGMENT,
            ARCHIVE_PERMISSION,
            DISK_FULL,
            RESTORE_COMMAND_FAILED,
            DATA_PERMISSION,
        ] {
            if let Some(found) = self.evidence.iter().find(|e| e.code == code) {
                return Some(found.clone());
            }
        }
        let missing: Vec<RawSegmentName> = self
            .misses
            .iter()
            .filter_map(|m| RawSegmentName::parse(m))
            .filter(|m| archive_last.is_none_or(|last| position(*m) <= position(last)))
            .collect();
        if self.restored_segments == 0 && !self.misses.is_empty() {
            return Some(diagnosis(
                ARCHIVE_EMPTY,
                "restore_command found no WAL file at all: wrong archive folder, or an empty archive",
                "check the folder in restore_command (DATA/postgresql.auto.conf or recovery.conf) \
                 and that it holds the segments",
            ));
        }
        let after_reached = missing
            .iter()
            .filter(|m| reached.is_none_or(|r| position(**m) > position(r)))
            .min_by_key(|m| position(**m))
            .or_else(|| missing.iter().min_by_key(|m| position(**m)));
        if let Some(gap) = after_reached {
            return Some(diagnosis(
                WAL_GAP,
                format!("segment {gap} is missing from the archive: replay cannot go past the gap"),
                format!(
                    "find {gap} (the old server's pg_wal, another copy of the archive); without it \
                     the data ends before it, so restore to a time before the gap or take a new base backup"
                ),
            ));
        }
        if let Some(detail) = &self.end_of_wal {
            return Some(diagnosis(
                WAL_INVALID,
                format!(
                    "replay stopped at an invalid WAL record before the archive's end: {detail}"
                ),
                "check the segments after it (gzip -t, pg_waldump) and replace a damaged one from \
                 another copy; without it the data ends there",
            ));
        }
        None
    }
}

/// Order of segments regardless of timeline (segment size is the same throughout).
fn position(name: RawSegmentName) -> (u32, u32) {
    (name.log, name.seg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_dropped_whatever_the_log_line_prefix() {
        for line in [
            "2026-11-25 13:13:53.385 UTC [9541] LOG:  redo starts at 0/7000028",
            "2026-11-25 13:13:53.385 UTC [9541] postgres@bench LOG:  redo starts at 0/7000028",
            "2026-11-25 13:13:53.385 UTC [9541] [unknown]@[unknown] LOG:  redo starts at 0/7000028",
            "LOG:  redo starts at 0/7000028",
        ] {
            assert_eq!(
                classify(line),
                LineKind::RedoStarts {
                    lsn: Lsn(0x7000028)
                },
                "{line}"
            );
        }
        let session = split_line(
            "2026-11-25 13:13:19.133 UTC [9425] postgres@bench ERROR:  recovery is in progress",
        );
        assert_eq!(session.source, Source::Server(Severity::Error));
        assert_eq!(session.message, "recovery is in progress");
    }

    #[test]
    fn tool_lines_are_recognized() {
        assert_eq!(
            classify(
                "cp: cannot stat '/srv/it'\\''s/wal/00000002.history': No such file or directory"
            ),
            LineKind::NormalMiss {
                missing_file: "00000002.history".into()
            }
        );
        assert_eq!(
            classify("gzip: /x/000000010000000000000016.gz: No such file or directory"),
            LineKind::NormalMiss {
                missing_file: "000000010000000000000016".into()
            }
        );
        assert_eq!(
            classify("cp: cannot stat ‘/x/000000010000000000000016’: No such file or directory"),
            LineKind::NormalMiss {
                missing_file: "000000010000000000000016".into()
            }
        );
        let code = |line: &str| match classify(line) {
            LineKind::Failure(d) => d.code,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            code("cp: cannot open '/x/000000010000000000000008' for reading: Permission denied"),
            codes::ARCHIVE_PERMISSION
        );
        assert_eq!(
            code("cp: cannot stat '/x/000000010000000000000008': Permission denied"),
            codes::ARCHIVE_PERMISSION
        );
        assert_eq!(
            code("sh: 1: cannot create pg_wal/RECOVERYXLOG: Permission denied"),
            codes::DATA_PERMISSION
        );
        assert_eq!(
            code("sh: 1: gunzip: not found"),
            codes::RESTORE_COMMAND_FAILED
        );
        assert_eq!(
            code("gzip: stdout: No space left on device"),
            codes::DISK_FULL
        );
        assert_eq!(
            code(
                "2026-11-25 13:12:20.351 UTC [9128] FATAL:  could not write to file \"pg_wal/xlogtemp.9128\": No space left on device"
            ),
            codes::DISK_FULL
        );
    }

    #[test]
    fn older_and_newer_wordings() {
        assert_eq!(
            classify("2019-09-02 15:48:52.503 UTC [1] LOG:  recovery has paused"),
            LineKind::PausedAtTarget
        );
        assert_eq!(
            classify("2019-09-02 15:48:52.503 UTC [1] LOG:  redo done at 0/3000060"),
            LineKind::RedoDone {
                lsn: Lsn(0x3000060)
            }
        );
        assert!(matches!(
            classify(
                "2026-01-01 00:00:00.000 UTC [1] LOG:  invalid record length at 0/3000060: expected at least 24, got 0"
            ),
            LineKind::EndOfWal { .. }
        ));
        assert!(matches!(
            classify(
                "2026-01-01 00:00:00.000 UTC [1] LOG:  invalid magic number 0000 in WAL segment 000000010000000000000003, LSN 0/3000000, offset 0"
            ),
            LineKind::EndOfWal { .. }
        ));
    }

    #[test]
    fn a_session_fatal_alone_does_not_fail_the_restore() {
        let mut t = ReplayTracker::default();
        t.feed("2026-11-25 13:12:36.097 UTC [9237] LOG:  starting archive recovery");
        t.feed("2026-11-25 13:12:36.100 UTC [9300] FATAL:  the database system is starting up");
        t.feed("2026-11-25 13:12:36.101 UTC [9301] postgres@x FATAL:  some session problem");
        t.feed("2026-11-25 13:12:36.248 UTC [9237] LOG:  redo starts at 0/7000028");
        assert!(!t.finished());
        t.feed("2026-11-25 13:12:38.031 UTC [9237] LOG:  redo done at 0/15000060 system usage: CPU: user: 0.60 s");
        t.feed("2026-11-25 13:12:38.148 UTC [9237] LOG:  archive recovery complete");
        t.feed("2026-11-25 13:12:38.217 UTC [9234] LOG:  database system is ready to accept connections");
        assert!(t.finished());
        assert!(t.outcome("000000010000000000000015", None).is_success());
    }

    #[test]
    fn a_generic_fatal_followed_by_startup_failure_is_the_diagnosis() {
        let mut t = ReplayTracker::default();
        t.feed("2026-11-25 13:12:36.097 UTC [9237] FATAL:  something new");
        t.feed("2026-11-25 13:12:36.098 UTC [9234] LOG:  startup process (PID 9237) exited with exit code 1");
        let outcome = t.outcome("000000010000000000000015", None);
        match outcome.verdict {
            Verdict::Failed { diagnosis, .. } => {
                assert_eq!(diagnosis.code, codes::SERVER_FATAL);
                assert_eq!(diagnosis.summary, "something new");
            }
            other => panic!("{other:?}"),
        }
    }
}
