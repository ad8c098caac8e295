//! The target server's side judged: what `pg::target` read over SSH turned
//! into problems with codes and fixes (archiving failing or off,
//! archive_timeout left at the verification value or off, an archive_command
//! that writes elsewhere, a target that cannot be reached). Pure.

use std::path::Path;

use crate::checks::health::{Problem, ProblemCode, Status};
use crate::pg::target::{ArchiveFailure, TargetView, VERIFICATION_ARCHIVE_TIMEOUT};

/// The problems the target's side shows, for the client folder `client_dir`.
pub fn problems(view: &TargetView, client_dir: &Path) -> Vec<Problem> {
    let status = match view {
        TargetView::Unreachable { address, error } => {
            return vec![Problem::new(
                ProblemCode::TargetUnreachable,
                Status::Unknown,
                format!("target {address} not reached: {error}"),
                "check the target is up and that this server can ssh to it (host, user, known_hosts in [clients.NAME.target])".to_owned(),
            )];
        }
        TargetView::Reached(status) => status,
    };
    let state = &status.state;
    let mut problems = Vec::new();
    if state.in_recovery {
        return problems;
    }
    if state.wal_level == "minimal" {
        problems.push(Problem::new(
            ProblemCode::ArchiveOff,
            Status::Critical,
            "wal_level = minimal on the target: WAL cannot be archived for recovery".to_owned(),
            "set wal_level = replica in postgresql.conf and restart".to_owned(),
        ));
    }
    if state.archive_mode == "off" {
        problems.push(Problem::new(
            ProblemCode::ArchiveOff,
            Status::Critical,
            "archive_mode = off on the target: nothing is archived".to_owned(),
            "set archive_mode = on (see `walwarden setup CLIENT --dry-run` for the lines) and restart".to_owned(),
        ));
    }
    if status.is_failing() {
        let why = status
            .failures
            .last()
            .map_or(String::new(), |f| format!(": {}", f.diagnosis.summary));
        let fix = status.failures.last().map_or_else(
            || "read the target's log for `archive command failed`".to_owned(),
            |f| f.diagnosis.fix.clone(),
        );
        problems.push(Problem::new(
            ProblemCode::ArchivingFailing,
            Status::Critical,
            format!(
                "archiving is failing on the target: last archived {}, {} failures counted (last on {}){why}",
                state.last_archived_wal.as_deref().unwrap_or("nothing"),
                state.failed_count,
                status
                    .failures
                    .iter()
                    .rev()
                    .find_map(ArchiveFailure::segment)
                    .or(state.last_failed_wal.as_deref())
                    .unwrap_or("?"),
            ),
            fix,
        ));
    }
    if state.archive_timeout == VERIFICATION_ARCHIVE_TIMEOUT {
        problems.push(Problem::new(
            ProblemCode::ArchiveTimeoutVerification,
            Status::Warning,
            "archive_timeout is still 60 s, the verification value: a quiet server ships 16 MiB a minute (22 GiB a day)".to_owned(),
            "set archive_timeout back to the production value (3600 to 86400) and reload".to_owned(),
        ));
    } else if state.archive_timeout == 0 && state.archive_mode != "off" {
        problems.push(Problem::new(
            ProblemCode::ArchiveTimeoutOff,
            Status::Warning,
            "archive_timeout = 0: a quiet server's last changes wait in a segment that may not fill for days".to_owned(),
            "set archive_timeout = 3600 (the tutorial's production value) and reload".to_owned(),
        ));
    }
    let wal_dir = crate::archive::folder::wal_dir(client_dir);
    if state.archive_mode != "off" && !state.archive_command.contains(&*wal_dir.to_string_lossy()) {
        problems.push(Problem::new(
            ProblemCode::ArchiveCommandElsewhere,
            Status::Warning,
            format!(
                "the target's archive_command does not name {}: it archives somewhere else",
                wal_dir.display()
            ),
            "paste the archive_command from `walwarden setup CLIENT --dry-run`".to_owned(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::target::fixtures::{LOG, reached, state, with_log};

    fn codes(view: &TargetView) -> Vec<ProblemCode> {
        problems(view, Path::new("/b/foo"))
            .iter()
            .map(|p| p.code)
            .collect()
    }

    #[test]
    fn a_healthy_target_has_no_problems_and_each_fault_has_its_code() {
        assert_eq!(codes(&reached(state())), vec![]);
        let mut failing = state();
        failing.failed_count = 4;
        failing.last_failed_wal = Some("00000001000000000000000B".into());
        failing.last_failed_time = Some("2026-11-25T13:13:53.000000Z".into());
        assert_eq!(
            codes(&with_log(failing.clone(), LOG)),
            vec![ProblemCode::ArchivingFailing]
        );
        let message = &problems(&with_log(failing.clone(), LOG), Path::new("/b/foo"))[0];
        assert!(
            message.message.contains("4 failures counted"),
            "{}",
            message.message
        );
        assert!(message.fix.contains("walwarden setup"), "{}", message.fix);
        // An old failure followed by successes is not "failing".
        failing.last_archived_time = Some("2026-11-25T13:14:00.000000Z".into());
        failing.last_archived_wal = Some("00000001000000000000000C".into());
        assert_eq!(codes(&with_log(failing, LOG)), vec![]);
        // ssh's exit 255 is FATAL to the archiver and never counted: the log
        // still shows segment 0B failing after 0A was archived.
        let mut uncounted = state();
        uncounted.failed_count = 0;
        assert_eq!(codes(&reached(uncounted.clone())), vec![]);
        assert_eq!(
            codes(&with_log(uncounted, LOG)),
            vec![ProblemCode::ArchivingFailing]
        );
        let mut verifying = state();
        verifying.archive_timeout = 60;
        assert_eq!(
            codes(&reached(verifying)),
            vec![ProblemCode::ArchiveTimeoutVerification]
        );
        let mut off = state();
        off.archive_mode = "off".into();
        assert_eq!(codes(&reached(off)), vec![ProblemCode::ArchiveOff]);
        let mut elsewhere = state();
        elsewhere.archive_command = "cp %p /mnt/x/%f".into();
        assert_eq!(
            codes(&reached(elsewhere)),
            vec![ProblemCode::ArchiveCommandElsewhere]
        );
        let gone = TargetView::Unreachable {
            address: "db".into(),
            error: "db is unreachable: Connection refused".into(),
        };
        assert_eq!(codes(&gone), vec![ProblemCode::TargetUnreachable]);
    }
}
