//! Catalog and health rules on trees made for each case: one test per
//! problem code (asserting code and severity), gap and timeline rules,
//! and bad input that must not panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use walwarden::archive::catalog::{self, Catalog, CatalogError, ScanOptions};
use walwarden::archive::wal::Lsn;
use walwarden::checks::health::{self, Problem, ProblemCode, Status};
use walwarden::config::{AcknowledgedGap, ClientPolicy, Config};
use walwarden::demo::{Cluster, set_mtime};

const MB16: u32 = 16 << 20;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn ago(minutes: u64) -> SystemTime {
    now() - Duration::from_secs(minutes * 60)
}

/// A backup root in a temp dir with helpers to lay out one client.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("backups");
        fs::create_dir(&root).unwrap();
        Tree { _tmp: tmp, root }
    }

    fn client(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A healthy client: base backup at segments start..=start+1, then segments up to `last`, one a minute.
    fn healthy(&self, name: &str, cluster: &Cluster, start: u64, last: u64) -> PathBuf {
        let dir = self.client(name);
        cluster
            .write_base_backup(
                &dir,
                cluster.id(1, start),
                cluster.id(1, start + 1),
                ago(last - start + 2),
            )
            .unwrap();
        for segno in start..=last {
            cluster
                .archive_segment(
                    &dir.join("wal"),
                    cluster.id(1, segno),
                    Some(ago(last - segno + 1)),
                )
                .unwrap();
        }
        dir
    }

    fn scan(&self) -> Catalog {
        catalog::scan(&self.root, &ScanOptions::default()).unwrap()
    }
}

fn policy() -> ClientPolicy {
    ClientPolicy {
        archive_timeout: Duration::from_secs(3600),
        stale_grace: Duration::from_secs(600),
        partial_grace: Duration::from_secs(600),
        acknowledged_gaps: Vec::new(),
        ..ClientPolicy::default()
    }
}

fn problems_of(catalog: &Catalog, name: &str, policy: &ClientPolicy) -> Vec<Problem> {
    let client = catalog
        .client(name)
        .unwrap_or_else(|| panic!("client {name} not in catalog"));
    health::assess(client, policy, now())
}

fn codes(problems: &[Problem]) -> Vec<(ProblemCode, Status)> {
    problems.iter().map(|p| (p.code, p.severity)).collect()
}

fn cluster() -> Cluster {
    Cluster::new(7712094032559808441, MB16)
}

#[test]
fn a_healthy_client_has_no_problems_and_a_restorable_time() {
    let tree = Tree::new();
    let c = cluster();
    tree.healthy("foo", &c, 7, 20);
    let catalog = tree.scan();
    let client = catalog.client("foo").unwrap();
    assert_eq!(codes(&problems_of(&catalog, "foo", &policy())), vec![]);
    assert_eq!(client.base.pg_version(), Some("15"));
    assert_eq!(client.base.system_identifier(), Some(7712094032559808441));
    assert_eq!(
        client.base.label().unwrap().start_segment,
        "000000010000000000000007"
    );
    assert_eq!(client.wal.segment_size, Some(MB16));
    let continuity = &client.continuity;
    assert_eq!(
        continuity.consistent_at.as_deref(),
        Some("000000010000000000000008")
    );
    assert_eq!(
        continuity.restorable_through.as_deref(),
        Some("000000010000000000000014")
    );
    assert_eq!(continuity.restorable_to, Some(ago(1)));
    assert!(continuity.gaps.is_empty());
}

/// A target time's segment, for the replay's progress: the first one of the
/// line that arrived at or after it (segments arrive one a minute here).
#[test]
fn the_segment_a_target_time_stops_in_is_the_first_to_arrive_after_it() {
    let tree = Tree::new();
    let c = cluster();
    // Segment n arrives at ago(20 - n + 1).
    tree.healthy("foo", &c, 7, 20);
    let catalog = tree.scan();
    let client = catalog.client("foo").unwrap();
    let line = &client.continuity;
    let at = |t| line.first_arrived_at_or_after(&client.wal, t);
    assert_eq!(
        at(ago(5) - Duration::from_secs(30)).as_deref(),
        Some("000000010000000000000010"),
        "16 arrived at ago(5), after the target; 15 at ago(6), before it"
    );
    assert_eq!(at(ago(5)).as_deref(), Some("000000010000000000000010"));
    assert_eq!(
        at(ago(100)).as_deref(),
        Some("000000010000000000000007"),
        "before the window: the base backup's first segment"
    );
    assert_eq!(at(now()), None, "after the last arrival: none");
}

#[test]
fn base_missing_when_there_is_no_base_folder_or_no_tarball() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.client("nobase");
    fs::create_dir(dir.join("wal")).unwrap();
    c.archive_segment(&dir.join("wal"), c.id(1, 1), Some(ago(1)))
        .unwrap();
    let empty = tree.client("emptybase");
    fs::create_dir_all(empty.join("base")).unwrap();
    fs::create_dir(empty.join("wal")).unwrap();
    c.archive_segment(&empty.join("wal"), c.id(1, 1), Some(ago(1)))
        .unwrap();
    let catalog = tree.scan();
    for name in ["nobase", "emptybase"] {
        let problems = problems_of(&catalog, name, &policy());
        assert_eq!(
            codes(&problems),
            vec![(ProblemCode::BaseMissing, Status::Critical)],
            "{name}"
        );
        assert_eq!(
            catalog.client(name).unwrap().continuity.restorable_to,
            None,
            "{name}: no base, nothing to restore"
        );
    }
}

#[test]
fn base_incomplete_for_missing_empty_unfinished_or_corrupt_tarballs() {
    let tree = Tree::new();
    let c = cluster();
    let no_pg_wal = tree.healthy("no_pg_wal", &c, 7, 10);
    fs::remove_file(no_pg_wal.join("base/pg_wal.tar.gz")).unwrap();
    let zero = tree.healthy("zero", &c, 7, 10);
    fs::write(zero.join("base/base.tar.gz"), b"").unwrap();
    let part = tree.healthy("part", &c, 7, 10);
    fs::rename(
        part.join("base/base.tar.gz"),
        part.join("base/base.tar.gz.part"),
    )
    .unwrap();
    let corrupt = tree.healthy("corrupt", &c, 7, 10);
    fs::write(corrupt.join("base/base.tar.gz"), b"this is not gzip").unwrap();
    let catalog = tree.scan();
    for (name, needle) in [
        ("no_pg_wal", "pg_wal.tar.gz is missing"),
        ("zero", "base.tar.gz is empty"),
        ("part", "base.tar.gz.part is an unfinished copy"),
        ("corrupt", "base tarball unreadable"),
    ] {
        let problems = problems_of(&catalog, name, &policy());
        let incomplete: Vec<_> = problems
            .iter()
            .filter(|p| p.code == ProblemCode::BaseIncomplete)
            .collect();
        assert!(!incomplete.is_empty(), "{name}: {problems:?}");
        assert!(incomplete.iter().all(|p| p.severity == Status::Critical));
        assert!(
            incomplete.iter().any(|p| p.message.contains(needle)),
            "{name}: {incomplete:?}"
        );
    }
}

#[test]
fn wal_missing_without_wal_folder_or_segments() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("nowal", &c, 7, 8);
    fs::remove_dir_all(dir.join("wal")).unwrap();
    let empty = tree.healthy("emptywal", &c, 7, 8);
    for entry in fs::read_dir(empty.join("wal")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let catalog = tree.scan();
    for name in ["nowal", "emptywal"] {
        let problems = problems_of(&catalog, name, &policy());
        assert!(
            codes(&problems).contains(&(ProblemCode::WalMissing, Status::Critical)),
            "{name}: {problems:?}"
        );
        // The base backup's own WAL is missing too: that is a gap before consistency.
        let gap = problems
            .iter()
            .find(|p| p.code == ProblemCode::WalGap)
            .expect("gap before consistency");
        assert!(
            gap.message.contains("cannot be restored"),
            "{}",
            gap.message
        );
    }
}

#[test]
fn wal_gap_after_consistency_limits_the_restorable_time() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("gappy", &c, 7, 20);
    for segno in [12u64, 13] {
        fs::remove_file(dir.join(format!("wal/{}.gz", c.id(1, segno).file_name(MB16)))).unwrap();
    }
    let catalog = tree.scan();
    let problems = problems_of(&catalog, "gappy", &policy());
    assert_eq!(
        codes(&problems),
        vec![(ProblemCode::WalGap, Status::Critical)]
    );
    assert!(
        problems[0]
            .message
            .contains("2 segments missing: 00000001000000000000000C .. 00000001000000000000000D"),
        "{}",
        problems[0].message
    );
    let continuity = &catalog.client("gappy").unwrap().continuity;
    assert_eq!(
        continuity.restorable_through.as_deref(),
        Some("00000001000000000000000B")
    );
    assert_eq!(continuity.restorable_to, Some(ago(20 - 11 + 1)));
    assert!(!continuity.gaps[0].before_consistency);
}

#[test]
fn a_gap_before_consistency_means_not_restorable() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("broken", &c, 7, 12);
    fs::remove_file(dir.join(format!("wal/{}.gz", c.id(1, 8).file_name(MB16)))).unwrap();
    let catalog = tree.scan();
    let continuity = &catalog.client("broken").unwrap().continuity;
    assert_eq!(continuity.restorable_to, None);
    assert!(continuity.gaps[0].before_consistency);
    let problems = problems_of(&catalog, "broken", &policy());
    assert_eq!(
        codes(&problems),
        vec![(ProblemCode::WalGap, Status::Critical)]
    );
}

#[test]
fn segments_before_the_base_backup_are_not_needed() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("old", &c, 0x20, 0x24);
    // Old segments with a hole, all before the base backup's start.
    for segno in [0x10u64, 0x11, 0x15] {
        c.archive_segment(&dir.join("wal"), c.id(1, segno), Some(ago(100)))
            .unwrap();
    }
    let catalog = tree.scan();
    assert_eq!(codes(&problems_of(&catalog, "old", &policy())), vec![]);
    assert_eq!(
        catalog
            .client("old")
            .unwrap()
            .continuity
            .needed_from
            .as_deref(),
        Some("000000010000000000000020")
    );
}

#[test]
fn a_timeline_switch_is_not_a_gap_and_abandoned_timelines_are_not_needed() {
    // The archive of the facts file: timelines 2, 3 and 4 all forked from 1.
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.client("forks");
    let wal = dir.join("wal");
    c.write_base_backup(&dir, c.id(1, 7), c.id(1, 0xA), ago(60))
        .unwrap();
    for segno in 7..=0x15u64 {
        c.archive_segment(&wal, c.id(1, segno), Some(ago(60 - segno)))
            .unwrap();
    }
    // TL1's last segment came from pg_wal after promotion: archived as .partial.
    let partial = wal.join("000000010000000000000016.partial.gz");
    fs::write(
        &partial,
        walwarden::demo::gzip(&c.segment_bytes(c.id(1, 0x16))).unwrap(),
    )
    .unwrap();
    c.write_history(&wal, 2, &[(1, Lsn(0x16000000))], ago(30))
        .unwrap();
    c.archive_segment(&wal, c.id(2, 0x16), Some(ago(29)))
        .unwrap();
    c.write_history(
        &wal,
        3,
        &[(1, Lsn(0x16000000)), (2, Lsn(0x12B0F130))],
        ago(25),
    )
    .unwrap();
    c.archive_segment(&wal, c.id(3, 0x12), Some(ago(24)))
        .unwrap();
    c.write_history(&wal, 4, &[(1, Lsn(0x160000A0))], ago(20))
        .unwrap();
    for segno in 0x16..=0x18u64 {
        c.archive_segment(&wal, c.id(4, segno), Some(ago(19 - (segno - 0x16))))
            .unwrap();
    }
    let catalog = tree.scan();
    let client = catalog.client("forks").unwrap();
    // Timelines 2 and 3 left timeline 1 after the base backup began: stray
    // branches beside the line, a warning each (not a gap).
    assert_eq!(
        codes(&problems_of(&catalog, "forks", &policy())),
        vec![
            (ProblemCode::TimelineBranch, Status::Warning),
            (ProblemCode::TimelineBranch, Status::Warning)
        ]
    );
    let continuity = &client.continuity;
    assert_eq!(
        continuity
            .branches
            .iter()
            .map(|b| (b.timeline.0, b.parent.map(|p| p.0)))
            .collect::<Vec<_>>(),
        vec![(2, Some(1)), (3, Some(1))]
    );
    assert_eq!(continuity.target_timeline.map(|t| t.0), Some(4));
    assert_eq!(
        continuity
            .restore_line
            .iter()
            .map(|s| s.timeline.0)
            .collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert_eq!(
        continuity.restorable_through.as_deref(),
        Some("000000040000000000000018")
    );
    let on_line: Vec<(u32, bool)> = continuity
        .timelines
        .iter()
        .map(|t| (t.timeline.0, t.on_restore_line))
        .collect();
    assert_eq!(on_line, vec![(1, true), (2, false), (3, false), (4, true)]);
    assert_eq!(continuity.timelines[0].partial, 1);

    // Without TL4's first segment, the switch leaves a gap named on timeline 4.
    fs::remove_file(wal.join("000000040000000000000016.gz")).unwrap();
    let catalog = tree.scan();
    let gaps = &catalog.client("forks").unwrap().continuity.gaps;
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].first, "000000040000000000000016");
}

#[test]
fn a_missing_history_file_is_reported() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("nohist", &c, 7, 10);
    c.archive_segment(&dir.join("wal"), c.id(2, 11), Some(ago(1)))
        .unwrap();
    let catalog = tree.scan();
    let problems = problems_of(&catalog, "nohist", &policy());
    assert!(
        problems
            .iter()
            .any(|p| p.code == ProblemCode::WalGap && p.message.contains("00000002.history")),
        "{problems:?}"
    );
}

#[test]
fn an_acknowledged_gap_stays_visible_but_does_not_count() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("acked", &c, 7, 20);
    fs::remove_file(dir.join(format!("wal/{}.gz", c.id(1, 15).file_name(MB16)))).unwrap();
    let catalog = tree.scan();
    let mut policy = policy();
    policy.acknowledged_gaps.push(AcknowledgedGap {
        from: "00000001000000000000000F".into(),
        to: None,
        note: "lost in the disk swap".into(),
    });
    let problems = problems_of(&catalog, "acked", &policy);
    assert_eq!(
        codes(&problems),
        vec![(ProblemCode::WalGap, Status::Critical)]
    );
    assert_eq!(
        problems[0].acknowledged.as_deref(),
        Some("lost in the disk swap")
    );
    assert_eq!(health::status_of(&problems), Status::Ok);
}

#[test]
fn wal_stale_warns_then_turns_critical() {
    let tree = Tree::new();
    let c = cluster();
    tree.healthy("quiet", &c, 7, 10);
    let catalog = tree.scan();
    let client = catalog.client("quiet").unwrap();
    let last = client.wal.last_arrival().unwrap();
    let mut p = policy();
    p.archive_timeout = Duration::from_secs(600);
    p.stale_grace = Duration::from_secs(60);
    let at = |minutes: u64| health::assess(client, &p, last + Duration::from_secs(minutes * 60));
    assert_eq!(codes(&at(10)), vec![]);
    assert_eq!(
        codes(&at(12)),
        vec![(ProblemCode::WalStale, Status::Warning)]
    );
    assert_eq!(
        codes(&at(22)),
        vec![(ProblemCode::WalStale, Status::Critical)]
    );
    assert!(
        at(22)[0].message.contains("22m ago"),
        "{}",
        at(22)[0].message
    );
}

#[test]
fn stray_partial_only_after_the_grace_period() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("parts", &c, 7, 10);
    let old = dir.join("wal/00000001000000000000000B.gz.part");
    fs::write(&old, b"\x1f\x8b").unwrap();
    set_mtime(&old, ago(30)).unwrap();
    let fresh = dir.join("wal/00000001000000000000000C.part");
    fs::write(&fresh, b"x").unwrap();
    set_mtime(&fresh, ago(1)).unwrap();
    let catalog = tree.scan();
    let problems = problems_of(&catalog, "parts", &policy());
    assert_eq!(
        codes(&problems),
        vec![(ProblemCode::StrayPartial, Status::Warning)]
    );
    assert!(
        problems[0]
            .message
            .contains("00000001000000000000000B.gz.part")
    );
    assert_eq!(catalog.client("parts").unwrap().wal.in_flight.len(), 2);
}

#[test]
fn unexpected_files_are_named_with_their_folder() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("messy", &c, 7, 9);
    fs::write(dir.join("wal/test.txt"), b"test").unwrap();
    fs::write(dir.join("base/notes.md"), b"x").unwrap();
    fs::write(dir.join("README"), b"x").unwrap();
    // backup_manifest and tablespace tarballs are expected.
    fs::write(dir.join("base/backup_manifest"), b"{}").unwrap();
    fs::write(dir.join("base/16385.tar.gz"), b"x").unwrap();
    let catalog = tree.scan();
    let problems = problems_of(&catalog, "messy", &policy());
    let mut messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    messages.sort();
    assert_eq!(
        messages,
        vec![
            "unexpected file README",
            "unexpected file base/notes.md",
            "unexpected file wal/test.txt"
        ]
    );
    assert!(
        problems
            .iter()
            .all(|p| p.code == ProblemCode::UnexpectedFile && p.severity == Status::Warning)
    );
    assert!(
        problems
            .iter()
            .find(|p| p.message.ends_with("test.txt"))
            .unwrap()
            .fix
            .contains("copy test")
    );
}

#[test]
fn segment_size_comes_from_the_header() {
    let tree = Tree::new();
    for (name, seg_size) in [("one_mb", 1u32 << 20), ("sixty_four", 64 << 20)] {
        let c = Cluster::new(42, seg_size);
        // Crosses a log boundary for 64 MiB segments (64 per log id).
        let dir = tree.client(name);
        c.write_base_backup(&dir, c.id(1, 62), c.id(1, 63), ago(10))
            .unwrap();
        for segno in 62..=66u64 {
            c.archive_plain_segment(&dir.join("wal"), c.id(1, segno), Some(ago(70 - segno)))
                .unwrap();
        }
    }
    let catalog = tree.scan();
    let small = catalog.client("one_mb").unwrap();
    assert_eq!(small.wal.segment_size, Some(1 << 20));
    assert_eq!(
        small.continuity.restorable_through.as_deref(),
        Some("000000010000000000000042")
    );
    let big = catalog.client("sixty_four").unwrap();
    assert_eq!(big.wal.segment_size, Some(64 << 20));
    assert_eq!(
        big.continuity.restorable_through.as_deref(),
        Some("000000010000000100000002")
    );
    for name in ["one_mb", "sixty_four"] {
        assert_eq!(
            codes(&problems_of(&catalog, name, &policy())),
            vec![],
            "{name}"
        );
    }
}

#[test]
fn odd_names_are_escaped_losslessly_and_links_are_never_followed() {
    use std::os::unix::ffi::OsStrExt;
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("odd", &c, 7, 9);
    fs::write(
        dir.join("wal")
            .join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
        b"x",
    )
    .unwrap();
    fs::write(dir.join("wal/000000010000000000000020.gz"), b"").unwrap();
    let outside = tree._tmp.path().join("outside.gz");
    fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("wal/00000001000000000000000A.gz")).unwrap();
    // A client folder that is a link is reported, never followed, even to a client inside the root.
    std::os::unix::fs::symlink(&dir, tree.root.join("alias")).unwrap();
    let catalog = tree.scan();
    let problems = problems_of(&catalog, "odd", &policy());
    assert!(
        problems.iter().any(
            |p| p.code == ProblemCode::UnexpectedFile && p.message.contains("wal/bad\\xffname")
        ),
        "{problems:?}"
    );
    let unreadable = problems
        .iter()
        .find(|p| p.code == ProblemCode::Unreadable)
        .expect("the link is reported");
    assert!(
        unreadable.message.contains("never followed")
            && unreadable.message.contains(&outside.display().to_string()),
        "{}",
        unreadable.message
    );
    assert_eq!(unreadable.severity, Status::Unknown);
    let alias = catalog
        .client("alias")
        .expect("the link is a client of its own");
    assert!(alias.wal.segments.is_empty() && alias.base.files.is_empty());
    let alias_problems = problems_of(&catalog, "alias", &policy());
    assert_eq!(
        codes(&alias_problems),
        vec![(ProblemCode::Unreadable, Status::Unknown)],
        "{alias_problems:?}"
    );
    // The zero-byte segment is no segment: 0A (the link) .. 1F are missing, 20 is empty.
    let gap = problems
        .iter()
        .find(|p| p.code == ProblemCode::WalGap)
        .expect("gap reported");
    assert!(
        gap.message
            .contains("000000010000000000000020 (1 present only as zero-byte files)"),
        "{}",
        gap.message
    );
}

/// A client whose folder, base/ or wal/ cannot be read (a wal/ symlinked
/// to a mount outside the root, a folder of another owner) is UNKNOWN with
/// `unreadable` alone: it was reported CRIT as if its WAL or base backup
/// were missing, a guess about what walwarden could not see.
#[test]
fn a_folder_walwarden_cannot_read_is_unknown_not_missing() {
    let tree = Tree::new();
    let c = cluster();
    let dir = tree.healthy("linked", &c, 7, 9);
    let elsewhere = tree._tmp.path().join("nfs/linked/wal");
    fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    fs::rename(dir.join("wal"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("wal")).unwrap();
    let base_elsewhere = tree._tmp.path().join("nfs/based/base");
    let based = tree.healthy("based", &c, 7, 9);
    fs::create_dir_all(base_elsewhere.parent().unwrap()).unwrap();
    fs::rename(based.join("base"), &base_elsewhere).unwrap();
    std::os::unix::fs::symlink(&base_elsewhere, based.join("base")).unwrap();
    let catalog = tree.scan();
    for name in ["linked", "based"] {
        let problems = problems_of(&catalog, name, &policy());
        assert_eq!(
            codes(&problems),
            vec![(ProblemCode::Unreadable, Status::Unknown)],
            "{name}: {problems:?}"
        );
    }
}

#[test]
fn a_missing_root_is_a_clear_error() {
    let err = catalog::scan(
        Path::new("/nonexistent/walwarden-root"),
        &ScanOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CatalogError::RootMissing(_)));
    assert!(err.to_string().contains("/nonexistent/walwarden-root"));
    let tree = Tree::new();
    let err = catalog::scan(
        &tree.root,
        &ScanOptions {
            only: vec!["ghost".into()],
            ..ScanOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no client named ghost"), "{err}");
}

#[test]
fn full_facts_come_from_pg_control_and_are_cached() {
    let tree = Tree::new();
    let c = Cluster::new(99, MB16);
    tree.healthy("full", &c, 7, 8);
    let cache = tree._tmp.path().join("cache/base-facts.json");
    let options = ScanOptions {
        cache: Some(cache.clone()),
        compute_full_facts: true,
        only: vec![],
    };
    let catalog = catalog::scan(&tree.root, &options).unwrap();
    let full = catalog
        .client("full")
        .unwrap()
        .base
        .full
        .expect("full facts computed");
    assert_eq!(full.system_identifier, 99);
    assert!(full.unpacked_bytes > 8192);
    assert!(cache.is_file());
    // A second scan that may not decompress still knows them, from the cache.
    let cached_only = ScanOptions {
        compute_full_facts: false,
        ..options
    };
    let again = catalog::scan(&tree.root, &cached_only).unwrap();
    assert_eq!(again.client("full").unwrap().base.full, Some(full));
    // A changed tarball invalidates the entry.
    set_mtime(&tree.root.join("full/base/base.tar.gz"), ago(1)).unwrap();
    let changed = catalog::scan(&tree.root, &cached_only).unwrap();
    assert_eq!(changed.client("full").unwrap().base.full, None);
}

#[test]
fn config_policies_reach_the_health_rules() {
    let config = Config::parse(
        "[clients.fast]\narchive_timeout = \"1m\"\nstale_grace = \"0s\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let tree = Tree::new();
    let c = cluster();
    tree.healthy("fast", &c, 7, 9);
    tree.healthy("slow", &c, 7, 9);
    let catalog = tree.scan();
    let later = now() + Duration::from_secs(300);
    let fast = health::assess(
        catalog.client("fast").unwrap(),
        config.policy_for("fast"),
        later,
    );
    let slow = health::assess(
        catalog.client("slow").unwrap(),
        config.policy_for("slow"),
        later,
    );
    assert_eq!(
        codes(&fast),
        vec![(ProblemCode::WalStale, Status::Critical)]
    );
    assert_eq!(codes(&slow), vec![]);
}
