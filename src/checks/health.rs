//! Health rules: what is wrong with a client, how bad it is, and what an
//! engineer does about it.
//!
//! Pure: `assess` takes what the scan found, the client's policy and the
//! clock, and does no I/O, so every rule is testable with a fixed `now`.
//! Problem codes are stable: scripts and alerts key on them.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::archive::catalog::Client;
use crate::archive::folder::BaseFileKind;
use crate::config::ClientPolicy;
use crate::display::short_duration;

/// How bad a client is. Ordered for aggregation: an unknown client (one
/// walwarden could not read) outranks a warning, a critical one outranks all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Status {
    /// The monitoring-plugin exit code: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARN",
            Status::Unknown => "UNKNOWN",
            Status::Critical => "CRIT",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    BaseMissing,
    BaseIncomplete,
    WalMissing,
    WalGap,
    WalStale,
    StrayPartial,
    UnexpectedFile,
    /// Something could not be read or would not be followed (a link, an I/O
    /// error): nothing is known of it.
    Unreadable,
    /// Reading was refused for want of permission: nothing is known of it,
    /// which is not damage.
    PermissionDenied,
    /// A WAL file that is not a valid stream of one segment (deep check).
    CorruptSegment,
    /// A segment of another database system (deep check).
    ForeignSegment,
    /// A segment whose header names another segment (deep check).
    MisnamedSegment,
    /// A base tarball that does not read to its end (deep check).
    BaseCorrupt,
    /// Files of base.tar.gz that differ from its backup_manifest, a manifest
    /// that fails its own checksum, or WAL it names that is nowhere (deep check).
    BaseManifestMismatch,
    /// A segment on a timeline before the point where its `.history` file
    /// says the timeline began, or a history file whose lines contradict
    /// themselves (deep check).
    TimelineMismatch,
    /// A timeline beside the restore line, branched off after the base
    /// backup began (a test restore or an old primary left archiving here).
    TimelineBranch,
    /// The newest WAL arrives on a timeline the base backup cannot reach.
    BaseOffLine,
    /// The receiver refused an upload whose name is taken by other content.
    RejectedOverwrite,
    /// The receiver refused an upload for the client's quota or a full disk.
    QuotaExceeded,
    /// The receiver refused an upload (damaged, misnamed, another system's, a wrong command).
    UploadRefused,
    /// No successful restore drill within `drill_max_age`.
    DrillStale,
    /// The recovery time estimated from the last drill passes the client's
    /// `rto`, or no drill exists to estimate it from.
    RtoExceeded,
    /// The target server could not be reached over SSH (`check --target`).
    TargetUnreachable,
    /// archive_mode off or wal_level minimal on the target.
    ArchiveOff,
    /// The target's newest archive failure is later than its newest success.
    ArchivingFailing,
    /// archive_timeout left at the verification window's 60 s.
    ArchiveTimeoutVerification,
    /// archive_timeout = 0 on the target.
    ArchiveTimeoutOff,
    /// The target's archive_command does not write to this client's folder.
    ArchiveCommandElsewhere,
}

impl ProblemCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::BaseMissing => "base_missing",
            ProblemCode::BaseIncomplete => "base_incomplete",
            ProblemCode::WalMissing => "wal_missing",
            ProblemCode::WalGap => "wal_gap",
            ProblemCode::WalStale => "wal_stale",
            ProblemCode::StrayPartial => "stray_partial",
            ProblemCode::UnexpectedFile => "unexpected_file",
            ProblemCode::Unreadable => "unreadable",
            ProblemCode::PermissionDenied => "permission_denied",
            ProblemCode::CorruptSegment => "corrupt_segment",
            ProblemCode::ForeignSegment => "foreign_segment",
            ProblemCode::MisnamedSegment => "misnamed_segment",
            ProblemCode::BaseCorrupt => "base_corrupt",
            ProblemCode::BaseManifestMismatch => "base_manifest_mismatch",
            ProblemCode::TimelineMismatch => "timeline_mismatch",
            ProblemCode::TimelineBranch => "timeline_branch",
            ProblemCode::BaseOffLine => "base_off_line",
            ProblemCode::RejectedOverwrite => "rejected_overwrite",
            ProblemCode::QuotaExceeded => "quota_exceeded",
            ProblemCode::UploadRefused => "upload_refused",
            ProblemCode::DrillStale => "drill_stale",
            ProblemCode::RtoExceeded => "rto_exceeded",
            ProblemCode::TargetUnreachable => "target_unreachable",
            ProblemCode::ArchiveOff => "archive_off",
            ProblemCode::ArchivingFailing => "archiving_failing",
            ProblemCode::ArchiveTimeoutVerification => "archive_timeout_verification",
            ProblemCode::ArchiveTimeoutOff => "archive_timeout_off",
            ProblemCode::ArchiveCommandElsewhere => "archive_command_elsewhere",
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub code: ProblemCode,
    pub severity: Status,
    /// What is wrong, naming the file or segment.
    pub message: String,
    /// What an engineer does about it.
    pub fix: String,
    /// The config note when the engineer has accepted this problem: it no longer counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<String>,
}

impl Problem {
    pub fn new(
        code: ProblemCode,
        severity: Status,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Problem {
        Problem {
            code,
            severity,
            message: message.into(),
            fix: fix.into(),
            acknowledged: None,
        }
    }

    pub fn counts(&self) -> bool {
        self.acknowledged.is_none()
    }
}

/// The client's status: the worst problem that counts.
pub fn status_of(problems: &[Problem]) -> Status {
    problems
        .iter()
        .filter(|p| p.counts())
        .map(|p| p.severity)
        .max()
        .unwrap_or(Status::Ok)
}

pub fn assess(client: &Client, policy: &ClientPolicy, now: SystemTime) -> Vec<Problem> {
    let mut problems = Vec::new();
    assess_unreadable(client, &mut problems);
    // A folder that could not be read (permission, a symlink out of the
    // root) is `unreadable`, unknown: calling its base backup or WAL missing
    // would be a guess, and a critical one.
    let unread = |path: &std::path::Path| client.unreadable.iter().any(|u| u.path == path);
    if unread(&client.path) {
        return problems;
    }
    if !unread(&client.base_dir()) {
        assess_base(client, &mut problems);
    }
    if !unread(&client.wal_dir()) {
        assess_wal(client, policy, now, &mut problems);
    }
    assess_unexpected(client, &mut problems);
    assess_refusals(client, now, &mut problems);
    problems
}

/// How long a refused upload counts toward the client's status: PostgreSQL
/// retries for ever, so a refusal that keeps happening stays in the window,
/// and one that was fixed (or was a one-off) fades out by itself.
const REFUSALS_COUNT_FOR: Duration = Duration::from_secs(24 * 3600);

/// Uploads the receiver refused lately, one problem per kind, naming the newest.
fn assess_refusals(client: &Client, now: SystemTime, problems: &mut Vec<Problem>) {
    let recent: Vec<&crate::archive::receiver_log::Refusal> = client
        .refusals
        .iter()
        .filter(|r| now.duration_since(r.time).unwrap_or_default() <= REFUSALS_COUNT_FOR)
        .collect();
    let kind = |code: &str| match code {
        "rejected_overwrite" => ProblemCode::RejectedOverwrite,
        "quota_exceeded" | "disk_full" => ProblemCode::QuotaExceeded,
        _ => ProblemCode::UploadRefused,
    };
    for code in [
        ProblemCode::RejectedOverwrite,
        ProblemCode::QuotaExceeded,
        ProblemCode::UploadRefused,
    ] {
        let of_kind: Vec<_> = recent
            .iter()
            .filter(|r| kind(&r.code_text) == code)
            .collect();
        let Some(newest) = of_kind.iter().max_by_key(|r| r.time) else {
            continue;
        };
        let foreign = of_kind.iter().any(|r| r.code_text.starts_with("foreign"));
        let severity = match code {
            ProblemCode::UploadRefused if !foreign => Status::Warning,
            _ => Status::Critical,
        };
        let what = match &newest.name {
            Some(name) => format!("{} {name}", newest.command),
            None => newest.command.clone(),
        };
        let fix = match code {
            ProblemCode::RejectedOverwrite => {
                "another server (a restored copy, an old primary, a rebuilt replica) archives into this client's folder, or its timeline was reused: find it and turn its archiving off; the stored file is kept, never delete it to make room"
            }
            ProblemCode::QuotaExceeded => {
                "archiving is blocked: raise `quota` under [clients.NAME] in the config, or as root move old base backups (.walwarden/previous/) out of the root; PostgreSQL retries by itself"
            }
            _ if foreign => {
                "another database system's WAL is sent with this client's key: check the archive_command of the server that sent it; a rebuilt cluster needs its own client folder (`walwarden setup NEWNAME`)"
            }
            _ => {
                "see the reason: a damaged upload is retried by PostgreSQL; a refused command means the target's archive_command is not the one `walwarden setup` prints"
            }
        };
        problems.push(Problem::new(
            code,
            severity,
            format!(
                "the receiver refused {} upload(s) in the last day; newest {} at {}: {} [{}]",
                of_kind.len(),
                what,
                crate::display::time_text(newest.time),
                newest.reason,
                newest.code_text
            ),
            fix,
        ));
    }
}

/// What to do when walwarden may not read a client's files. Clients stay
/// apart: access goes through a group, never to every user (`o+r`), and the
/// client's own user keeps owning its folder (never `chown` it away).
pub const PERMISSION_FIX: &str = "run walwarden as root (its packaged units do), or give the user that runs it read access through a group only that user is in: chgrp -R GROUP on the client's folder, chmod -R g+rX, and chmod g+s on base/ and wal/ so new files keep the group; never o+r or o+rx, which opens one client's WAL to every other client's user, and never chown the folder away from the client's own user, which archive_command writes as";

fn assess_unreadable(client: &Client, problems: &mut Vec<Problem>) {
    use crate::archive::folder::UnreadableKind;
    for item in &client.unreadable {
        let path = crate::display::escape_path(&item.path);
        let (code, severity, message, fix) = match item.kind {
            UnreadableKind::PermissionDenied => (
                ProblemCode::PermissionDenied,
                Status::Unknown,
                format!("cannot read {path}: permission denied; its state is unknown"),
                PERMISSION_FIX,
            ),
            UnreadableKind::Link => (
                ProblemCode::Unreadable,
                Status::Unknown,
                format!(
                    "{path} is a symlink ({}): links are never followed",
                    item.error
                ),
                "replace the link by the folder or file itself; a client's folder, base/, wal/ and every file in them must be real, under the backup root",
            ),
            UnreadableKind::NotRegular(kind) => (
                ProblemCode::UnexpectedFile,
                Status::Warning,
                format!(
                    "{path} is a {}, not a regular file: never opened",
                    kind.as_str()
                ),
                "remove it: only regular files belong in a client's folder (a named pipe or a device there would block or trick whoever reads it)",
            ),
            // Removed while it was listed: nothing to report.
            UnreadableKind::Gone => continue,
            UnreadableKind::Other => (
                ProblemCode::Unreadable,
                Status::Unknown,
                format!("cannot read {path}: {}", item.error),
                "check the file system (dmesg, the disk) and the folder's owner and mode, then check again",
            ),
        };
        problems.push(Problem::new(code, severity, message, fix));
    }
}

fn assess_base(client: &Client, problems: &mut Vec<Problem>) {
    let base = &client.base;
    if base.unreadable {
        // Reported as unreadable or permission_denied: "missing" would be a guess.
        return;
    }
    let take_backup = "take a new base backup: pg_basebackup --format=tar --gzip --checkpoint=fast -D base/ on the target server, then copy base.tar.gz and pg_wal.tar.gz here";
    let tarballs =
        base.file(BaseFileKind::BaseTar).is_some() || base.file(BaseFileKind::PgWalTar).is_some();
    if !base.present || (!tarballs && !base.files.iter().any(|f| f.kind == BaseFileKind::InFlight))
    {
        let message = if base.present {
            "base/ holds no base.tar.gz or pg_wal.tar.gz: nothing to restore from".to_owned()
        } else {
            "no base/ folder: nothing to restore from".to_owned()
        };
        problems.push(Problem::new(
            ProblemCode::BaseMissing,
            Status::Critical,
            message,
            take_backup,
        ));
        return;
    }
    let mut incomplete = |message: String| {
        problems.push(Problem::new(
            ProblemCode::BaseIncomplete,
            Status::Critical,
            message,
            take_backup,
        ));
    };
    for (kind, name) in [
        (BaseFileKind::BaseTar, "base.tar.gz"),
        (BaseFileKind::PgWalTar, "pg_wal.tar.gz"),
    ] {
        match base.file(kind) {
            None => incomplete(format!("{name} is missing from base/")),
            Some(file) if file.fact.size == 0 => {
                incomplete(format!("{} is empty (0 bytes)", file.fact.name))
            }
            Some(_) => {}
        }
    }
    for file in base
        .files
        .iter()
        .filter(|f| f.kind == BaseFileKind::InFlight)
    {
        incomplete(format!("{} is an unfinished copy", file.fact.name));
    }
    if let Some(error) = &base.head_error {
        incomplete(format!("base tarball unreadable: {error}"));
    }
    if let Some(error) = &base.pg_wal_error {
        incomplete(format!("pg_wal tarball unreadable: {error}"));
    }
}

fn assess_wal(
    client: &Client,
    policy: &ClientPolicy,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) {
    let wal = &client.wal;
    let continuity = &client.continuity;
    if wal.unreadable {
        // Reported as `unreadable`; claiming missing WAL or gaps would be a guess.
        return;
    }
    if !wal.present || wal.segments.iter().all(|s| s.partial) {
        let message = if wal.present {
            "wal/ holds no WAL segments: archiving has not delivered anything"
        } else {
            "no wal/ folder: archiving has nowhere to go"
        };
        problems.push(Problem::new(
            ProblemCode::WalMissing,
            Status::Critical,
            message,
            "check archive_mode = on and archive_command on the target server, and pg_stat_archiver's failed_count; the folder must be writable by the client's backup user",
        ));
    }
    for gap in &continuity.gaps {
        let (range, them) = if gap.count == 1 {
            (format!("segment {} is missing", gap.first), "it")
        } else {
            (
                format!(
                    "{} segments missing: {} .. {}",
                    gap.count, gap.first, gap.last
                ),
                "them",
            )
        };
        let empties = continuity.empty.iter().filter(|name| {
            let stem = name.get(..24).unwrap_or(name);
            gap.first.as_str() <= stem && stem <= gap.last.as_str()
        });
        let range = match empties.count() {
            0 => range,
            n => format!("{range} ({n} present only as zero-byte files)"),
        };
        // PostgreSQL reads an older timeline's file of the same number when
        // the line's own is missing, and replays the branch the switch abandoned.
        let range = match gap.stand_ins.as_slice() {
            [] => range,
            names => format!(
                "{range} (PostgreSQL would read {} instead and replay what the timeline switch abandoned)",
                names.join(", ")
            ),
        };
        let (message, fix) = if gap.before_consistency {
            (
                format!(
                    "{range}, before the base backup is consistent: the backup cannot be restored"
                ),
                "take a new base backup now; the current one is unusable without these segments"
                    .to_owned(),
            )
        } else if !gap.stand_ins.is_empty() {
            (
                format!("{range}: a restore stops before {them}"),
                format!(
                    "copy {} from the pg_wal of the server that switched to its timeline (gzip it as archive_command does); never put the older timeline's file in its place: it holds the branch the switch abandoned",
                    gap.first
                ),
            )
        } else {
            (
                format!("{range}: a restore stops before {them}"),
                "find the segments on the target server (pg_wal) and copy them in, or take a new base backup so the gap is no longer needed".to_owned(),
            )
        };
        let mut problem = Problem::new(ProblemCode::WalGap, Status::Critical, message, fix);
        problem.acknowledged = policy
            .acknowledged_gaps
            .iter()
            .find(|ack| ack.covers(&gap.first, &gap.last))
            .map(|ack| ack.note.clone());
        problems.push(problem);
    }
    assess_timelines(client, problems);
    for timeline in &continuity.missing_histories {
        problems.push(Problem::new(
            ProblemCode::WalGap,
            Status::Critical,
            format!("timeline history file {:08X}.history is missing or unreadable: a restore cannot follow timeline {}", timeline.0, timeline.0),
            "copy the .history file from the target server's pg_wal into wal/",
        ));
    }
    if let Some(last) = wal.last_arrival() {
        let age = now.duration_since(last).unwrap_or_default();
        let warn_after = policy.archive_timeout + policy.stale_grace;
        let crit_after = policy.archive_timeout * 2 + policy.stale_grace;
        if age > warn_after {
            let severity = if age > crit_after {
                Status::Critical
            } else {
                Status::Warning
            };
            problems.push(Problem::new(
                ProblemCode::WalStale,
                severity,
                format!(
                    "last WAL arrived {} ago; expected at least every {} (archive_timeout)",
                    short_duration(age),
                    short_duration(policy.archive_timeout)
                ),
                "on the target server check that PostgreSQL runs, pg_stat_archiver's last_failed_wal and the server log for \"archive command failed\"; test the ssh connection as postgres",
            ));
        }
    }
    for part in &wal.in_flight {
        let age = now.duration_since(part.mtime).unwrap_or_default();
        if age > policy.partial_grace {
            problems.push(Problem::new(
                ProblemCode::StrayPartial,
                Status::Warning,
                format!(
                    "{} has not been renamed for {}: an interrupted transfer",
                    part.name,
                    short_duration(age)
                ),
                "PostgreSQL retries the segment; once the final file exists, delete the .part file",
            ));
        }
    }
}

/// Timelines beside the restore line, and a base the newest WAL has left behind.
fn assess_timelines(client: &Client, problems: &mut Vec<Problem>) {
    let continuity = &client.continuity;
    let Some(target) = continuity.target_timeline else {
        return;
    };
    for branch in &continuity.branches {
        let t = branch.timeline.0;
        let origin = match (branch.parent, branch.switch_point) {
            (Some(parent), Some(at)) => {
                format!(
                    "timeline {t} branched off timeline {} at {at}, after the base backup began",
                    parent.0
                )
            }
            _ if branch.history_missing => format!(
                "timeline {t} holds {} segment(s) past the base backup's start but no {t:08X}.history names its parent",
                branch.segments
            ),
            _ => format!("timeline {t} does not branch off the restore line's timelines"),
        };
        let last = match (&branch.last, branch.last_arrival) {
            (Some(last), Some(at)) => format!(
                "; its newest segment {last} arrived {}",
                humantime::format_rfc3339_seconds(at)
            ),
            _ => String::new(),
        };
        let latest = if continuity.pg_latest == Some(branch.timeline) {
            format!(
                "; PostgreSQL's default recovery_target_timeline = 'latest' would follow it, not timeline {}",
                target.0
            )
        } else {
            String::new()
        };
        problems.push(Problem::new(
            ProblemCode::TimelineBranch,
            Status::Warning,
            format!(
                "{origin}{last}, while the newest WAL continues timeline {}: walwarden's restore and drill follow timeline {} explicitly{latest}",
                target.0, target.0
            ),
            format!(
                "if timeline {t} is a test restore or an old primary, turn archiving off on that server and move wal/{t:08X}.history* and wal/{t:08X}*.gz out of the backup root; if it is the real primary, restore with --timeline {t} and check its archive_command"
            ),
        ));
    }
    let off = match &continuity.production_off_line {
        Some(crate::archive::continuity::OffLine::ForkedBeforeBase {
            timeline,
            parent,
            switch_point,
        }) => format!(
            "the newest WAL arrives on timeline {}, which left timeline {} at {switch_point}, before this base backup began",
            timeline.0, parent.0
        ),
        Some(crate::archive::continuity::OffLine::NotDescendant { timeline }) => format!(
            "the newest WAL arrives on timeline {}, whose history does not pass through the base backup's timeline",
            timeline.0
        ),
        // A missing history file is reported as such (wal_gap).
        Some(crate::archive::continuity::OffLine::HistoryMissing { .. }) | None => return,
    };
    problems.push(Problem::new(
        ProblemCode::BaseOffLine,
        Status::Critical,
        format!(
            "{off}: a restore from this base cannot reach it and brings back timeline {} only",
            target.0
        ),
        "take a new base backup of the server that archives the newest WAL (walwarden setup prints the pg_basebackup command)",
    ));
}

fn assess_unexpected(client: &Client, problems: &mut Vec<Problem>) {
    let leftovers = client
        .stray
        .iter()
        .map(|f| (String::new(), f))
        .chain(
            client
                .base
                .files
                .iter()
                .filter(|f| f.kind == BaseFileKind::Other)
                .map(|f| ("base/".to_owned(), &f.fact)),
        )
        .chain(client.wal.others.iter().map(|f| ("wal/".to_owned(), f)));
    for (folder, file) in leftovers {
        let fix = if file.name.starts_with("test") {
            "a leftover of the copy test: delete it"
        } else {
            "move it out of the backup folder; only base/ and wal/ files belong here"
        };
        problems.push(Problem::new(
            ProblemCode::UnexpectedFile,
            Status::Warning,
            format!("unexpected file {folder}{}", file.name),
            fix,
        ));
    }
    for name in &client.continuity.misnamed {
        problems.push(Problem::new(
            ProblemCode::UnexpectedFile,
            Status::Warning,
            format!(
                "wal/{name} is not a valid segment name for {}-byte segments",
                client.continuity.segment_size
            ),
            "a renamed or foreign file: move it out of the archive",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_orders_for_aggregation_and_exit_codes() {
        assert!(
            Status::Critical > Status::Unknown
                && Status::Unknown > Status::Warning
                && Status::Warning > Status::Ok
        );
        let codes: Vec<i32> = [
            Status::Ok,
            Status::Warning,
            Status::Critical,
            Status::Unknown,
        ]
        .iter()
        .map(|s| s.exit_code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3]);
    }
}
