//! The oracle: what plain PostgreSQL does with each archive of the corpus
//! (`tests/corpus/build.sh`, `support::corpus`), and proof that each
//! archive's facts.json is right.
//!
//! For every shape, two tests:
//! * `plain`: restored as the tutorial says (base + pg_wal tarballs,
//!   recovery.signal, restore_command; only the restore's own port and socket
//!   folder added). The assertions document PostgreSQL's behaviour, and with it
//!   that the corpus reproduces each problem of issue 10.
//! * `correct`: restored along the production line (explicit
//!   `recovery_target_timeline`, inherited recovery/standby settings removed,
//!   own socket): it must be promoted with exactly `expected_rows`, having
//!   replayed to the last commit the facts name.
//!
//! Real PostgreSQL 15 and 17 run; missing binaries fail the tests.

mod support;

use std::collections::BTreeMap;

use support::corpus::{Archive, RestoreMode, Restored, Settled, Shape, corpus, parse_lsn, restore};

fn plain(shape: Shape) -> (Archive, Restored) {
    let archive = corpus(shape);
    let before = archive.wal_files();
    let restored = restore(&archive, RestoreMode::Plain { own_socket: true });
    assert_eq!(
        archive.wal_files(),
        before,
        "a restore wrote into the cached archive"
    );
    (archive, restored)
}

fn without(mut map: BTreeMap<String, u64>, batches: &[&str]) -> BTreeMap<String, u64> {
    for b in batches {
        assert!(map.remove(*b).is_some(), "no batch {b} in {map:?}");
    }
    map
}

/// Asserts that the log says recovery's last transaction was at `time`.
fn assert_last_commit(restored: &Restored, time: &str) {
    let log = restored.log();
    let line = format!("last completed transaction was at log time {time}");
    assert!(log.contains(&line), "no {line:?} in the log:\n{log}");
}

fn assert_settled(restored: &Restored, want: Settled) {
    assert_eq!(restored.settled, want, "server log:\n{}", restored.log());
}

fn assert_reached_end(archive: &Archive, restored: &Restored, tli: u32) {
    let end = &archive.timeline(tli).end_lsn;
    let replayed = restored.replay_lsn();
    assert!(
        replayed >= parse_lsn(end),
        "replay ended at {replayed:X}, before timeline {tli}'s last commit ({end})\n{}",
        restored.log()
    );
}

/// The generic correct restore: promoted, on the facts' rows and last commit.
fn correct(shape: Shape) {
    let archive = corpus(shape);
    let facts = &archive.facts;
    check_facts_against_archive(&archive);
    let before = archive.wal_files();
    let restored = restore(&archive, RestoreMode::Correct);
    assert_settled(&restored, Settled::Promoted);
    assert_eq!(restored.system_identifier(), facts.system_identifier);
    assert_eq!(
        restored.rows(),
        facts.expected_rows,
        "log:\n{}",
        restored.log()
    );
    assert_last_commit(&restored, &facts.expected_last_commit);
    if facts.production_end_reachable {
        assert_reached_end(&archive, &restored, facts.production_timeline);
    }
    let highest = facts.timelines.iter().map(|t| t.tli).max().unwrap();
    assert_eq!(restored.timeline(), highest + 1, "log:\n{}", restored.log());
    // Writable, as a restore must leave it.
    restored.psql("insert into fleet (batch) values ('after_restore')");
    restored.psql("select pg_switch_wal()");
    assert_eq!(
        archive.wal_files(),
        before,
        "a restore wrote into the cached archive"
    );
}

/// Facts that can be checked on the files alone.
fn check_facts_against_archive(archive: &Archive) {
    let facts = &archive.facts;
    let files = archive.wal_files();
    let has = |name: &str| files.iter().any(|f| f == &format!("{name}.gz"));
    assert!(has(&facts.production_last_segment), "{files:?}");
    assert_eq!(
        facts.production_last_segment,
        archive.production().last_segment.clone().unwrap()
    );
    assert_eq!(
        &facts.base.start_segment[..8],
        &format!("{:08X}", facts.base.start_timeline)
    );
    for tl in &facts.timelines {
        if let Some(first) = &tl.first_segment {
            assert!(has(first), "{first} not in {files:?}");
            assert_eq!(&first[..8], &format!("{:08X}", tl.tli));
        }
        if tl.tli > 1 {
            assert_eq!(tl.parent, Some(tl.tli - 1), "{tl:?}");
        }
    }
    for partial in &facts.oddity.partial_segments {
        assert!(has(partial), "{partial} not in {files:?}");
    }
    if let Some(missing) = &facts.oddity.missing_switch_segment {
        assert!(!has(missing), "{missing} in {files:?}");
    }
    if let Some(history) = &facts.oddity.history_only_in_pg_wal_tar {
        assert!(!has(history), "{history} in {files:?}");
    }
    assert!(
        facts
            .server_version
            .contains(&format!("PostgreSQL) {}.", facts.major)),
        "{}",
        facts.server_version
    );
}

macro_rules! correct_tests {
    ($($name:ident => $shape:expr,)*) => {
        mod correct {
            use super::*;
            $(#[test] fn $name() { correct($shape) })*
        }
    };
}

correct_tests! {
    straight => Shape::Straight,
    failover => Shape::Failover,
    pitr => Shape::Pitr,
    pitr_missing_switch => Shape::PitrMissingSwitch,
    test_branch => Shape::TestBranch,
    inherited_targets => Shape::InheritedTargets,
    standby_base => Shape::StandbyBase,
    standby_base_from_standby => Shape::StandbyBaseFromStandby,
    foreign_settings => Shape::ForeignSettings,
    new_base_on_tl2 => Shape::NewBaseOnTl2,
    new_base_on_tl2_no_history => Shape::NewBaseOnTl2NoHistory,
    small_segments => Shape::SmallSegments,
    promoted_pg17 => Shape::PromotedPg17,
}

/// Shapes where the tutorial's restore is right: `latest` follows the
/// production line to its end and promotes.
fn plain_is_right(shape: Shape) {
    let (archive, restored) = plain(shape);
    let facts = &archive.facts;
    assert_settled(&restored, Settled::Promoted);
    assert_eq!(restored.rows(), facts.expected_rows);
    assert_last_commit(&restored, &facts.expected_last_commit);
    assert_reached_end(&archive, &restored, facts.production_timeline);
    let highest = facts.timelines.iter().map(|t| t.tli).max().unwrap();
    assert_eq!(restored.timeline(), highest + 1);
}

mod plain {
    use super::*;

    #[test]
    fn straight() {
        plain_is_right(Shape::Straight);
    }

    /// TL2's first segment begins with TL1's pages (xlp_tli = 1): PostgreSQL
    /// reads it without complaint.
    #[test]
    fn failover() {
        let archive = corpus(Shape::Failover);
        let tl2 = archive.timeline(2);
        assert_eq!(tl2.first_segment_page_tli, Some(1), "{tl2:?}");
        assert_eq!(archive.facts.oddity.partial_segments.len(), 1);
        plain_is_right(Shape::Failover);
    }

    #[test]
    fn pitr() {
        let (archive, restored) = plain(Shape::Pitr);
        assert_eq!(archive.timeline(2).first_segment_page_tli, Some(1));
        assert_settled(&restored, Settled::Promoted);
        let got = restored.rows();
        assert!(!got.contains_key("cut_by_pitr"), "{got:?}");
        assert_eq!(got, archive.facts.expected_rows);
        assert_eq!(restored.timeline(), 3);
    }

    /// Without TL2's switch segment PostgreSQL reads TL1's file of that number
    /// (XLogFileReadAnyTLI) and replays the tail the PITR cut off: B comes back.
    /// TL2's next segment then does not continue that WAL, so recovery ends
    /// there and TL2's rows are lost. It says nothing louder than LOG.
    #[test]
    fn pitr_missing_switch() {
        let (archive, restored) = plain(Shape::PitrMissingSwitch);
        let missing = archive.facts.oddity.missing_switch_segment.clone().unwrap();
        let tl1_file = format!("00000001{}", &missing[8..]);
        assert_settled(&restored, Settled::Promoted);
        let log = restored.log();
        assert!(
            log.contains(&format!("restored log file \"{tl1_file}\" from archive")),
            "{log}"
        );
        assert_eq!(
            restored.rows(),
            archive.timeline(1).rows,
            "timeline 1's rows, cut_by_pitr included, none of timeline 2's\n{log}"
        );
        assert!(!log.contains("FATAL"), "{log}");
        assert_eq!(restored.timeline(), 3);
    }

    /// `recovery_target_timeline = latest` follows the abandoned test branch:
    /// the test copy's rows, none of production's rows after the branch.
    #[test]
    fn test_branch() {
        let (archive, restored) = plain(Shape::TestBranch);
        assert_eq!(archive.facts.oddity.branch_timeline, Some(2));
        assert_settled(&restored, Settled::Promoted);
        let got = restored.rows();
        assert_eq!(got, archive.timeline(2).rows);
        assert!(got.contains_key("test_branch") && !got.contains_key("prod_after_branch"));
        assert_last_commit(&restored, &archive.timeline(2).last_commit);
        assert_eq!(restored.timeline(), 3);
        let log = restored.log();
        assert!(
            log.contains("restored log file \"00000002.history\" from archive"),
            "{log}"
        );
    }

    /// The inherited `recovery_target_time` lies before the base; recovery
    /// stops before the first commit after consistency and pauses there.
    #[test]
    fn inherited_targets() {
        let (archive, restored) = plain(Shape::InheritedTargets);
        let inherited = &archive.facts.oddity.inherited_settings;
        assert!(
            inherited
                .iter()
                .any(|l| l.starts_with("recovery_target_time = "))
                && inherited.contains(&"recovery_target_action = 'pause'".to_string()),
            "{inherited:?}"
        );
        assert_settled(&restored, Settled::Paused);
        let log = restored.log();
        assert!(
            log.contains("recovery stopping before commit of transaction"),
            "{log}"
        );
        assert!(
            log.contains("LOG:  pausing at the end of recovery"),
            "{log}"
        );
        assert!(
            log.contains("HINT:  Execute pg_wal_replay_resume() to promote."),
            "{log}"
        );
        assert_eq!(
            restored.rows(),
            without(
                archive.facts.expected_rows.clone(),
                &["tl2_after_base", "tl2_last"]
            )
        );
        assert_eq!(restored.psql("select pg_is_in_recovery()"), "t");
    }

    fn stays_standby(shape: Shape) {
        let (archive, restored) = plain(shape);
        assert!(archive.facts.oddity.standby_signal);
        assert!(
            archive
                .facts
                .oddity
                .inherited_settings
                .iter()
                .any(|l| l.starts_with("primary_conninfo = ")),
            "{:?}",
            archive.facts.oddity
        );
        assert_settled(&restored, Settled::Standby);
        // standby.signal wins over recovery.signal: it replays the whole
        // archive, then retries the (gone) primary and the archive for ever.
        let log = restored.log();
        assert!(log.contains("LOG:  entering standby mode"), "{log}");
        assert!(
            log.contains("FATAL:  could not connect to the primary server"),
            "{log}"
        );
        assert_eq!(restored.rows(), archive.facts.expected_rows);
        assert_reached_end(&archive, &restored, 1);
        assert_eq!(restored.psql("select pg_is_in_recovery()"), "t");
    }

    #[test]
    fn standby_base() {
        stays_standby(Shape::StandbyBase);
    }

    #[test]
    fn standby_base_from_standby() {
        let archive = corpus(Shape::StandbyBaseFromStandby);
        assert_eq!(archive.facts.base.backup_from, "standby");
        stays_standby(Shape::StandbyBaseFromStandby);
    }

    /// The tutorial's restore, nothing added: the socket folder of the
    /// source's postgresql.conf does not exist here.
    #[test]
    fn foreign_settings() {
        let archive = corpus(Shape::ForeignSettings);
        let dir = archive.facts.oddity.foreign_socket_dir.clone().unwrap();
        let port = archive.facts.oddity.foreign_port.unwrap();
        let restored = restore(&archive, RestoreMode::Plain { own_socket: false });
        assert_settled(
            &restored,
            Settled::FailedToStart {
                fatal: format!(
                    "could not create lock file \"{dir}/.s.PGSQL.{port}.lock\": No such file or directory"
                ),
            },
        );
        // With its own socket folder the same tutorial restore works.
        drop(restored);
        let restored = restore(&archive, RestoreMode::Plain { own_socket: true });
        assert_settled(&restored, Settled::Promoted);
        assert_eq!(restored.rows(), archive.facts.expected_rows);
    }

    #[test]
    fn new_base_on_tl2() {
        let archive = corpus(Shape::NewBaseOnTl2);
        assert_eq!(archive.facts.base.start_timeline, 2);
        plain_is_right(Shape::NewBaseOnTl2);
    }

    /// 00000002.history is only in pg_wal.tar.gz: PostgreSQL does not miss it.
    #[test]
    fn new_base_on_tl2_no_history() {
        let archive = corpus(Shape::NewBaseOnTl2NoHistory);
        assert_eq!(archive.facts.base.start_timeline, 2);
        assert_eq!(
            archive.facts.oddity.history_only_in_pg_wal_tar.as_deref(),
            Some("00000002.history")
        );
        plain_is_right(Shape::NewBaseOnTl2NoHistory);
    }

    #[test]
    fn small_segments() {
        let archive = corpus(Shape::SmallSegments);
        assert_eq!(archive.facts.segment_size, 1 << 20);
        assert_eq!(archive.timeline(2).first_segment_page_tli, Some(1));
        let (archive, restored) = plain(Shape::SmallSegments);
        assert_settled(&restored, Settled::Promoted);
        assert_eq!(restored.rows(), archive.facts.expected_rows);
        assert_eq!(restored.timeline(), 3);
    }

    #[test]
    fn promoted_pg17() {
        let archive = corpus(Shape::PromotedPg17);
        assert!(archive.facts.server_version.contains("PostgreSQL) 17."));
        assert_eq!(archive.timeline(2).first_segment_page_tli, Some(1));
        plain_is_right(Shape::PromotedPg17);
    }
}
