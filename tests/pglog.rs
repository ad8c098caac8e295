//! The log classifier and replay tracker on the PostgreSQL 15.20 logs
//! recorded in /work/shared/domain/postgresql-15-facts.md §4, copied verbatim
//! (placeholders BACKUPS, WALCOPY, SOCKDIR kept) into tests/golden/pglog/.
//! The archive in those experiments ends at 000000010000000000000015.

mod support;

use std::fs;
use std::path::PathBuf;

use walwarden::archive::wal::Lsn;
use walwarden::ops::restore::recovery_conf::{TargetTime, parse_target_time};
use walwarden::ops::restore::replay::{ReplayOutcome, ReplayTracker, Verdict};
use walwarden::pg::pglog::{LineKind, classify, codes};

const ARCHIVE_LAST: &str = "000000010000000000000015";

fn log(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/pglog")
        .join(format!("{name}.log"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn track(text: &str) -> ReplayTracker {
    let mut tracker = ReplayTracker::default();
    for line in text.lines() {
        tracker.feed(line);
    }
    tracker
}

fn target() -> TargetTime {
    parse_target_time("2026-11-25 13:09:57.279753+00").unwrap()
}

fn outcome(name: &str, target: Option<&TargetTime>) -> ReplayOutcome {
    let tracker = track(&log(name));
    assert!(tracker.finished(), "{name}: the log reaches an end state");
    tracker.outcome(ARCHIVE_LAST, target)
}

fn failure_code(outcome: &ReplayOutcome) -> &'static str {
    match &outcome.verdict {
        Verdict::Failed { diagnosis, .. } => diagnosis.code,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn b_the_correct_restore_is_a_success_to_segment_15() {
    let outcome = outcome("b-success", None);
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome}");
    assert!(outcome.is_success());
    assert_eq!(
        outcome.last_segment.as_deref(),
        Some("000000010000000000000015")
    );
    assert_eq!(outcome.consistent_at, Some(Lsn(0xA000138)));
    assert_eq!(outcome.redo_done, Some(Lsn(0x15000060)));
    assert_eq!(outcome.new_timeline, Some(2));
    assert_eq!(
        outcome.last_transaction.as_deref(),
        Some("2026-11-25 13:10:19.334202+00")
    );
    assert!(outcome.evidence.is_empty(), "{:?}", outcome.evidence);
    assert_eq!(
        outcome.to_string(),
        "replayed to 000000010000000000000015 (redo done at 0/15000060), new timeline 2, \
         last transaction at 2026-11-25 13:10:19.334202+00"
    );
}

#[test]
fn b_the_same_restore_judged_against_a_longer_archive_is_an_early_stop() {
    let outcome = track(&log("b-success")).outcome("000000010000000000000020", None);
    assert!(!outcome.is_success());
    assert!(
        matches!(outcome.verdict, Verdict::EarlyStop { .. }),
        "{outcome}"
    );
}

#[test]
fn c_permission_denied_is_an_early_stop_diagnosed_as_permission() {
    let outcome = outcome("c-permission-denied", None);
    assert!(
        !outcome.is_success(),
        "PostgreSQL opened, but the data stops at the backup's end"
    );
    match &outcome.verdict {
        Verdict::EarlyStop {
            reached,
            archive_last,
            cause,
        } => {
            assert_eq!(reached.as_deref(), Some("00000001000000000000000A"));
            assert_eq!(archive_last, ARCHIVE_LAST);
            assert_eq!(cause.code, codes::ARCHIVE_PERMISSION);
            assert!(
                cause.summary.contains("Permission denied"),
                "{}",
                cause.summary
            );
            assert!(cause.fix.contains("chown"), "{}", cause.fix);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(outcome.new_timeline, Some(2));
    assert!(outcome.to_string().contains("STOPPED EARLY"), "{outcome}");
}

#[test]
fn c_permission_lines_classify_as_permission() {
    let line = "gzip: BACKUPS/client1/wal/000000010000000000000008.gz: Permission denied";
    match classify(line) {
        LineKind::Failure(d) => assert_eq!(d.code, codes::ARCHIVE_PERMISSION),
        other => panic!("{other:?}"),
    }
}

#[test]
fn g_a_missing_segment_is_an_early_stop_diagnosed_as_a_gap() {
    let outcome = outcome("g-gap", None);
    match &outcome.verdict {
        Verdict::EarlyStop { reached, cause, .. } => {
            assert_eq!(reached.as_deref(), Some("00000001000000000000000E"));
            assert_eq!(cause.code, codes::WAL_GAP);
            assert!(
                cause.summary.contains("00000001000000000000000F"),
                "{}",
                cause.summary
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_recovery_conf_on_15_is_the_recovery_conf_diagnosis() {
    let outcome = outcome("a-recovery-conf-on-15", None);
    assert_eq!(failure_code(&outcome), codes::RECOVERY_CONF_UNSUPPORTED);
    let fix = &outcome.diagnosis().unwrap().fix;
    assert!(fix.contains("recovery.signal"), "{fix}");
}

#[test]
fn a2_no_recovery_signal_is_diagnosed_although_the_server_started() {
    let outcome = outcome("a2-no-recovery-signal", None);
    assert_eq!(failure_code(&outcome), codes::NO_RECOVERY_SIGNAL);
    let codes_seen: Vec<_> = outcome.evidence.iter().map(|d| d.code).collect();
    assert_eq!(codes_seen, [codes::RESTORED_SERVER_ARCHIVING]);
}

#[test]
fn f_a_target_before_consistency_is_diagnosed() {
    let outcome = outcome(
        "f-target-before-consistency",
        Some(&parse_target_time("2026-11-25 13:04:00+00").unwrap()),
    );
    assert_eq!(failure_code(&outcome), codes::TARGET_BEFORE_CONSISTENCY);
}

#[test]
fn d_the_pitr_pause_is_recognized() {
    let text = log("d-pitr-pause");
    let pause_line = text
        .lines()
        .find(|l| l.contains("pausing at the end of recovery"))
        .unwrap();
    assert_eq!(classify(pause_line), LineKind::PausedAtTarget);

    // Up to the pause (the server waits there for pg_wal_replay_resume()).
    let until_pause: String = text
        .lines()
        .take_while(|l| !l.contains("HINT:  Execute pg_wal_replay_resume()"))
        .map(|l| format!("{l}\n"))
        .collect();
    let tracker = track(&until_pause);
    assert!(tracker.finished());
    let paused = tracker.outcome(ARCHIVE_LAST, Some(&target()));
    assert_eq!(paused.verdict, Verdict::PausedAtTarget);
    assert!(paused.is_success());
    assert_eq!(
        paused.last_segment.as_deref(),
        Some("000000010000000000000012")
    );

    // The whole log: resumed, promoted on timeline 3; the target was reached, so
    // ending before the archive's last segment is right.
    let resumed = outcome("d-pitr-pause", Some(&target()));
    assert_eq!(resumed.verdict, Verdict::Succeeded, "{resumed}");
    assert_eq!(resumed.new_timeline, Some(3));
    assert_eq!(
        resumed.last_transaction.as_deref(),
        Some("2026-11-25 13:09:55.26269+00")
    );
}

#[test]
fn d2_pitr_with_promote_is_a_success() {
    let outcome = outcome("d2-pitr-promote", Some(&target()));
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome}");
    assert_eq!(outcome.redo_done, Some(Lsn(0x12B0F130)));
}

#[test]
fn d2_without_the_target_the_same_log_is_an_early_stop() {
    let outcome = outcome("d2-pitr-promote", None);
    assert!(
        matches!(outcome.verdict, Verdict::EarlyStop { .. }),
        "{outcome}"
    );
}

#[test]
fn e_invalid_record_length_at_the_end_of_wal_is_not_a_failure() {
    let text = log("e-partial-end-of-wal");
    let line = text
        .lines()
        .find(|l| l.contains("invalid record length at 0/160000A0"))
        .unwrap();
    assert!(
        matches!(classify(line), LineKind::EndOfWal { .. }),
        "{:?}",
        classify(line)
    );
    let outcome = outcome("e-partial-end-of-wal", None);
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome}");
    assert_eq!(
        outcome.last_segment.as_deref(),
        Some("000000010000000000000016")
    );
    assert_eq!(outcome.new_timeline, Some(4));
}

#[test]
fn history_misses_are_normal_misses() {
    for (name, file) in [
        ("b-success", "00000002.history"),
        ("b-success", "00000001.history"),
        ("d-pitr-pause", "00000003.history"),
        ("e-partial-end-of-wal", "00000004.history"),
    ] {
        let text = log(name);
        let line = text
            .lines()
            .find(|l| l.starts_with("gzip: ") && l.contains(&format!("{file}.gz")))
            .unwrap();
        assert_eq!(
            classify(line),
            LineKind::NormalMiss {
                missing_file: file.into()
            },
            "{line}"
        );
    }
    let restored = "2026-11-25 13:13:55.464 UTC [9544] LOG:  restored log file \"00000002.history\" from archive";
    assert_eq!(
        classify(restored),
        LineKind::RestoredHistory {
            file: "00000002.history".into()
        }
    );
}

#[test]
fn every_facts_log_classifies_without_panicking_and_progress_lines_name_segments() {
    for name in [
        "a-recovery-conf-on-15",
        "a2-no-recovery-signal",
        "b-success",
        "c-permission-denied",
        "d-pitr-pause",
        "d2-pitr-promote",
        "e-partial-end-of-wal",
        "f-target-before-consistency",
        "g-gap",
    ] {
        for line in log(name).lines() {
            if let LineKind::Progress { restored_segment } = classify(line) {
                assert_eq!(restored_segment.len(), 24, "{line}");
            }
        }
    }
}

#[test]
fn debian_prefixed_logs_give_the_same_verdicts() {
    // Debian's log_line_prefix '%m [%p] %q%u@%d ': sessions get "user@db ",
    // background processes nothing more. Give every server line a session part.
    let debian: String = log("c-permission-denied")
        .lines()
        .map(|l| match l.find("] ") {
            Some(i) if l.starts_with("2026-") => {
                format!("{}] postgres@postgres {}\n", &l[..i], &l[i + 2..])
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(debian.contains("[9128] postgres@postgres LOG:  redo starts at 0/7000028"));
    let outcome = track(&debian).outcome(ARCHIVE_LAST, None);
    assert_eq!(
        outcome.diagnosis().map(|d| d.code),
        Some(codes::ARCHIVE_PERMISSION)
    );
}

#[test]
fn an_appended_log_file_is_judged_by_its_last_start() {
    // pg_ctl -l appends: the refused recovery.conf start, then the correct one.
    let both = format!("{}{}", log("a-recovery-conf-on-15"), log("b-success"));
    let outcome = track(&both).outcome(ARCHIVE_LAST, None);
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome}");
}

/// The facts' last section: a `Z` in recovery_target_time stops PostgreSQL 15
/// at start-up. Reproduced with the real server parsing the file (`postgres -C`),
/// and its log lines diagnosed.
#[test]
fn pg15_a_z_target_time_is_refused_and_diagnosed() {
    let bin = support::require_pg_bin(15);
    let dir = support::pg_tempdir("walwarden-pglog-");
    fs::write(dir.path().join("postgresql.conf"), "").unwrap();
    fs::write(
        dir.path().join("postgresql.auto.conf"),
        "recovery_target_time = '2026-11-25T13:28:18.022631Z'\n",
    )
    .unwrap();
    // -C first: PostgreSQL allows it as root.
    let out = support::pg::pg_command(&bin, "postgres")
        .arg("-C")
        .arg("recovery_target_time")
        .arg("-D")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "PostgreSQL 15 accepted a Z time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut tracker = ReplayTracker::default();
    for line in stderr.lines() {
        tracker.feed(line);
    }
    assert!(tracker.finished(), "{stderr}");
    let outcome = tracker.outcome(ARCHIVE_LAST, None);
    assert_eq!(failure_code(&outcome), codes::BAD_TARGET_TIME, "{stderr}");
}
