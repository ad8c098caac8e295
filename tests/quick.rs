//! The cheap level of segment checks on every ordinary `check`: a truncated
//! .gz is caught without --deep, and what was judged is remembered so a
//! re-scan of an unchanged archive opens no segment.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::checks::quick::QuickCache;
use walwarden::demo::Cluster;

const SEG_SIZE: u32 = 16 << 20;
const SYSTEM: u64 = 7_400_000_000_000_000_001;

/// A client with a base backup at 0x10 and segments 0x10..=last, one a minute up to now.
fn client(root: &Path, name: &str, last: u64) -> PathBuf {
    let cluster = Cluster::new(SYSTEM, SEG_SIZE);
    let dir = root.join(name);
    let now = SystemTime::now();
    let ago = |m: u64| now - Duration::from_secs(m * 60);
    cluster
        .write_base_backup(
            &dir,
            cluster.id(1, 0x10),
            cluster.id(1, 0x11),
            ago(last - 0x10 + 2),
        )
        .unwrap();
    for segno in 0x10..=last {
        cluster
            .archive_segment(
                &dir.join("wal"),
                cluster.id(1, segno),
                Some(ago(last - segno)),
            )
            .unwrap();
    }
    dir
}

fn check(root: &Path, home: &Path) -> (i32, serde_json::Value) {
    support::check::check_json(root, home, &[])
}

fn codes(doc: &serde_json::Value) -> Vec<(String, String)> {
    support::check::first_client_problems(doc)
}

#[test]
fn an_ordinary_check_catches_a_truncated_gz_and_remembers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let dir = client(&root, "alpha", 0x18);
    let home = tmp.path().join("home");

    let (code, doc) = check(&root, &home);
    assert_eq!(codes(&doc), vec![], "clean archive: {doc:#}");
    assert_eq!(code, 0);

    // Cut the newest-but-one segment to half, keeping its mtime as a copy with -p would.
    let victim = dir.join("wal/000000010000000000000015.gz");
    let mtime = fs::metadata(&victim).unwrap().modified().unwrap();
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    walwarden::demo::set_mtime(&victim, mtime).unwrap();

    for run in ["first", "remembered"] {
        let (code, doc) = check(&root, &home);
        let found = codes(&doc);
        assert_eq!(found.len(), 1, "{run} run: {found:#?}");
        assert_eq!(found[0].0, "corrupt_segment", "{run} run");
        assert!(
            found[0].1.contains("000000010000000000000015.gz") && found[0].1.contains("trailer"),
            "{run} run names the file and the trailer: {}",
            found[0].1
        );
        assert_eq!(code, 2, "{run} run");
    }
}

#[test]
fn quick_check_names_a_misnamed_and_a_foreign_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let dir = client(&root, "alpha", 0x14);
    let wal = dir.join("wal");
    // Segment 0x12's bytes under 0x15's name, and another cluster's 0x16.
    fs::copy(
        wal.join("000000010000000000000012.gz"),
        wal.join("000000010000000000000015.gz"),
    )
    .unwrap();
    let stranger = Cluster::new(SYSTEM + 1, SEG_SIZE);
    stranger
        .archive_segment(&wal, stranger.id(1, 0x16), None)
        .unwrap();
    let catalog = catalog::scan(&root, &ScanOptions::default()).unwrap();
    let mut cache = QuickCache::load(None);
    let problems = cache.check_client(&catalog.clients[0]);
    let found: Vec<_> = problems
        .iter()
        .map(|p| (p.code.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].0, "misnamed_segment");
    assert!(
        found[0].1.contains("000000010000000000000015.gz"),
        "{found:#?}"
    );
    assert_eq!(found[1].0, "foreign_segment");
    assert!(
        found[1].1.contains("000000010000000000000016.gz"),
        "{found:#?}"
    );
}

/// The scan bench's tree in small: placeholder files (gzip magic, then
/// zeros) after one real segment. The first check opens them all and finds
/// them corrupt; the second opens none, so the bench's repeated `check`
/// runs stay a listing plus a hash of what the scan stat'ed.
#[test]
fn a_rescan_of_an_unchanged_archive_opens_no_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let dir = client(&root, "alpha", 0x10);
    let mut placeholder = [0u8; 32];
    placeholder[..2].copy_from_slice(&[0x1f, 0x8b]);
    for segno in 0x11..0x11 + 600u64 {
        let name = format!("00000001{:08X}{:08X}.gz", segno >> 8, segno & 0xFF);
        fs::write(dir.join("wal").join(name), placeholder).unwrap();
    }
    let cache_path = tmp.path().join("quick.json");
    let scan = || catalog::scan(&root, &ScanOptions::default()).unwrap();

    let mut cache = QuickCache::load(Some(&cache_path));
    let problems = cache.check_client(&scan().clients[0]);
    assert_eq!(cache.files_read, 601, "first check reads every segment");
    assert_eq!(
        problems.len(),
        1,
        "one problem for the run of placeholders: {problems:#?}"
    );
    assert!(
        problems[0].message.starts_with(
            "wal/000000010000000000000011.gz .. wal/000000010000000200000068.gz (600 files) is damaged"
        ),
        "{}",
        problems[0].message
    );
    cache.save().unwrap();

    let mut cache = QuickCache::load(Some(&cache_path));
    let again = cache.check_client(&scan().clients[0]);
    assert_eq!(cache.files_read, 0, "nothing reopened");
    assert_eq!(again, problems, "the same verdicts, from the cache");

    // One changed file re-reads its block only: the names 00000001000000020000xxxx,
    // segments 0x200..=0x268 (16 MiB segments: 256 per log).
    let changed = dir.join("wal/000000010000000200000034.gz");
    assert!(changed.is_file());
    fs::write(&changed, [0x1f, 0x8b, 0, 0]).unwrap();
    walwarden::demo::set_mtime(&changed, SystemTime::now() + Duration::from_secs(5)).unwrap();
    let mut cache = QuickCache::load(Some(&cache_path));
    cache.check_client(&scan().clients[0]);
    assert_eq!(cache.files_read, 0x269 - 0x200, "only the block of log 2");
}

/// The dashboard gets the quick check's problems after its scan (the loop
/// sends `QuickChecked` once the check ran in the background): the client's
/// row turns critical and lists the damaged file.
#[test]
fn the_dashboard_shows_what_the_quick_check_found() {
    use walwarden::checks::health::Status;
    use walwarden::config::Config;
    use walwarden::tui::app::{App, Event};

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let dir = client(&root, "alpha", 0x14);
    let victim = dir.join("wal/000000010000000000000012.gz");
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() - 3]).unwrap();

    let catalog = catalog::scan(&root, &ScanOptions::default()).unwrap();
    let mut cache = QuickCache::load(None);
    let input = walwarden::checks::quick::QuickInput::borrowed(&catalog.clients[0]);
    let findings = walwarden::checks::quick::QuickFindings {
        problems: cache.check(&input),
        unusable: cache.unusable(&input),
        recovery_point: None,
    };
    let mut app = App::new(root.clone(), Config::default(), SystemTime::now());
    app.update(Event::Scanned(Ok(catalog)));
    assert_eq!(app.rows[0].status, Status::Ok, "before the quick check");
    assert_eq!(
        app.rows[0].wal.restorable_through.as_deref(),
        Some("000000010000000000000014")
    );
    app.update(Event::QuickChecked(vec![("alpha".into(), findings)]));
    assert_eq!(app.rows[0].status, Status::Critical);
    // Replay would stop at the damaged segment: the window ends before it.
    assert_eq!(
        app.rows[0].wal.restorable_through.as_deref(),
        Some("000000010000000000000011")
    );
    assert_eq!(
        app.rows[0].wal.stopped_at_bad.as_deref(),
        Some("000000010000000000000012.gz")
    );
    assert!(
        app.rows[0]
            .problems
            .iter()
            .any(|p| p.code.as_str() == "corrupt_segment"
                && p.message.contains("000000010000000000000012.gz")),
        "{:#?}",
        app.rows[0].problems
    );
    // A later check that finds nothing clears it.
    app.update(Event::QuickChecked(vec![(
        "alpha".into(),
        walwarden::checks::quick::QuickFindings::default(),
    )]));
    assert_eq!(app.rows[0].status, Status::Ok);
    assert_eq!(
        app.rows[0].wal.restorable_through.as_deref(),
        Some("000000010000000000000014")
    );
}
