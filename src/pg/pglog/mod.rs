//! A PostgreSQL server's log, line by line: what each line means
//! ([`classify`]), with a diagnosis and fix for the known failures. Pure:
//! the caller reads the file and feeds lines. The restore follows replay
//! with it (`ops::restore::replay`), the target's side reads archive
//! failures with it (`pg::target`).
//!
//! Lines come with PostgreSQL's prefix (`2026-11-25 13:13:53.385 UTC [9541] LOG:  `,
//! Debian's `%m [%p] %q%u@%d ` adds `user@db ` for sessions) or bare: the
//! stderr of restore_command (`gzip: ...`, `cp: ...`, `sh: 1: ...`) goes into
//! the same file without a prefix. English messages (`lc_messages = C` or `en`)
//! only.

pub mod walget_line;

use std::fmt;

use crate::archive::wal::{Lsn, WalFileKind};

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
    pub const SOCKET_DIR_MISSING: &str = "socket-dir-missing";
    pub const PORT_IN_USE: &str = "port-in-use";
    pub const LIBRARY_MISSING: &str = "library-missing";
    pub const CONFIG_FILE_MISSING: &str = "config-file-missing";
    pub const STANDBY_MODE: &str = "standby-mode";
    pub const UNREQUESTED_PAUSE: &str = "unrequested-pause";
    /// Refusals of `walwarden wal-get` (see [`crate::pg::pglog::walget_line`]).
    pub const FOREIGN_SEGMENT: &str = "foreign-segment";
    pub const CORRUPT_SEGMENT: &str = "corrupt-segment";
    pub const MISNAMED_SEGMENT: &str = "misnamed-segment";
}

pub(crate) fn diagnosis(
    code: &'static str,
    summary: impl Into<String>,
    fix: impl Into<String>,
) -> Diagnosis {
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
    /// `entering standby mode`: standby.signal (or standby_mode) is in force.
    /// A restore never asks for it: the server would replay the archive, then
    /// wait for a primary for ever instead of opening.
    StandbyMode,
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
        Source::Unknown => crate::pg::pglog::walget_line::classify(line).unwrap_or(LineKind::Other),
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
    if m == "starting archive recovery" || m.starts_with("starting point-in-time recovery to ") {
        return LineKind::ArchiveRecoveryStarting;
    }
    if m == "entering standby mode" {
        return LineKind::StandbyMode;
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
    // Settings that came with the base backup and do not fit this host: the
    // postmaster stops before recovery begins.
    if m.starts_with("could not create lock file ")
        && m.contains(".s.PGSQL.")
        && m.contains("No such file or directory")
    {
        let folder = quoted(m)
            .and_then(|path| path.rsplit_once('/'))
            .map_or("?", |(dir, _)| dir);
        return fail(
            SOCKET_DIR_MISSING,
            format!(
                "the socket folder {folder} (unix_socket_directories from the base backup's postgresql.conf) does not exist on this host"
            ),
            "restore again with --set unix_socket_directories=FOLDER, a folder that exists and the PostgreSQL user can write (e.g. /var/run/postgresql)",
        );
    }
    if m.starts_with("could not create any TCP/IP sockets")
        || (m.starts_with("could not bind ") && m.contains("Address already in use"))
        || (m.starts_with("lock file ") && m.contains(".s.PGSQL.") && m.contains("already exists"))
    {
        return fail(
            PORT_IN_USE,
            format!("the port is taken by another server: {m}"),
            "restore again with --set port=N (a free port), or stop the server that holds it",
        );
    }
    if m.starts_with("could not access file ") && m.contains("No such file or directory")
        || m.starts_with("could not load library ")
    {
        return fail(
            LIBRARY_MISSING,
            format!("a library the base backup's settings load is not installed here: {m}"),
            "install the same extension packages as on the source server (shared_preload_libraries), or restore again with --set shared_preload_libraries=... without it",
        );
    }
    if (m.starts_with("could not load server certificate file ")
        || m.starts_with("could not load private key file ")
        || m.starts_with("could not load root certificate file ")
        || m.starts_with("could not open configuration file ")
        || (m.starts_with("could not open file ") && m.contains("pg_hba")))
        && matches!(severity, Severity::Fatal | Severity::Panic)
    {
        return fail(
            CONFIG_FILE_MISSING,
            format!("a file the base backup's settings name is missing here: {m}"),
            "restore again with a --set for that setting (e.g. --set ssl=off, --set hba_file=...), or copy the file from the source server",
        );
    }
    if m.starts_with("could not connect to the primary server") {
        return fail(
            STANDBY_MODE,
            "the restored server runs as a standby and keeps retrying its old primary (standby.signal and primary_conninfo came with the base backup)".into(),
            "stop it, delete DATA/standby.signal, keep DATA/recovery.signal, set primary_conninfo = '' and start again (walwarden's restore does this)",
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
            "let the PostgreSQL OS user read this client's folder through a group only it is in, \
             keeping clients apart: chgrp -R GROUP on the client folder, chmod -R g+rX, chmod g+s \
             on base/ and wal/ (new files keep the group); never o+r, and never chown the folder \
             away from the client's own user (archive_command writes as it); then restore again",
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
}
