//! Where replay got to, from the restored server's log: each line
//! classified (`pg::pglog`), the segments restored, the consistency and
//! redo-done points, the new timeline, and the verdict once the log says so.
//!
//! The trap this module exists for: when the archive is unreadable or has a
//! gap, PostgreSQL logs no error of its own. It recovers as far as it can,
//! picks a new timeline and opens for writes. Only comparing where replay
//! ended with where the archive ends tells a complete restore from a partial
//! one, so [`ReplayTracker::outcome`] never calls a restore a success without
//! that comparison.

use std::fmt;

use crate::archive::wal::{Lsn, RawSegmentName, SegmentId, Timeline};
use crate::ops::restore::recovery_conf::TargetTime;
use crate::pg::pglog::{
    Diagnosis, LineKind, Severity, Source, classify, codes, diagnosis, split_line,
};

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
            LineKind::StandbyMode => {
                self.archive_recovery = true;
                self.fatal.get_or_insert_with(|| {
                    diagnosis(
                        codes::STANDBY_MODE,
                        "the restored server entered standby mode: it would replay the archive, then wait for a primary for ever instead of opening",
                        "stop it, delete DATA/standby.signal (and on 10/11 standby_mode in recovery.conf), keep recovery.signal, and start it again; walwarden's restore removes standby.signal that comes with a base backup",
                    )
                });
            }
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
        } else if self.paused && target.is_some() {
            Verdict::PausedAtTarget
        } else if self.paused {
            Verdict::Failed {
                diagnosis: diagnosis(
                    UNREQUESTED_PAUSE,
                    format!(
                        "recovery paused, read-only, though no target was asked for{}: a recovery target came with the base backup (an earlier restore's postgresql.auto.conf)",
                        self.stopping
                            .as_deref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default()
                    ),
                    "remove the recovery_target* lines from DATA/postgresql.auto.conf (and any --set of them) and restore again; walwarden resets inherited targets unless a --set names one",
                ),
                cause: None,
            }
        } else if !(self.ready || self.complete) {
            if let (true, Some(fatal)) = (self.shut_down, &self.pending_fatal) {
                // The postmaster itself gave up (a socket folder, a port, a
                // library): its FATAL is the cause, not "stopped".
                Verdict::Failed {
                    diagnosis: fatal.clone(),
                    cause: None,
                }
            } else if self.shut_down {
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

    /// A refusal before the archive's end is the early stop's cause, named.
    #[test]
    fn the_replay_tracker_names_a_refused_segment_as_the_cause_of_an_early_stop() {
        let mut t = ReplayTracker::default();
        for line in [
            "2026-11-25 13:12:36.097 UTC [9237] LOG:  starting archive recovery",
            "2026-11-25 13:12:36.159 UTC [9237] LOG:  restored log file \"00000001000000000000000A\" from archive",
            "walwarden wal-get: refused 00000001000000000000000B (corrupt-segment): not a valid stream: corrupt deflate stream",
            "2026-11-25 13:12:38.031 UTC [9237] LOG:  redo done at 0/A000138 system usage: CPU: user: 0.60 s",
            "2026-11-25 13:12:38.109 UTC [9237] LOG:  selected new timeline ID: 2",
            "2026-11-25 13:12:38.148 UTC [9237] LOG:  archive recovery complete",
            "2026-11-25 13:12:38.217 UTC [9234] LOG:  database system is ready to accept connections",
        ] {
            t.feed(line);
        }
        let outcome = t.outcome("000000010000000000000015", None);
        match &outcome.verdict {
            Verdict::EarlyStop { cause, .. } => {
                assert_eq!(cause.code, "corrupt-segment");
                assert!(cause.summary.contains("00000001000000000000000B"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_line_is_a_gap_the_tracker_names() {
        let mut t = ReplayTracker::default();
        for line in [
            "LOG:  starting archive recovery",
            "LOG:  restored log file \"00000001000000000000000E\" from archive",
            "walwarden wal-get: missing 00000001000000000000000F (wal-gap): not in /x/wal, the line goes on to 000000010000000000000015",
            "LOG:  redo done at 0/EFFFD68 system usage: CPU: user: 0.06 s",
            "LOG:  database system is ready to accept connections",
        ] {
            t.feed(line);
        }
        match t.outcome("000000010000000000000015", None).verdict {
            Verdict::EarlyStop { cause, .. } => {
                assert_eq!(cause.code, "wal-gap");
                assert!(cause.summary.contains("00000001000000000000000F"));
            }
            other => panic!("{other:?}"),
        }
    }
}
