//! The catalog on backups made by real PostgreSQL servers: PostgreSQL 15
//! from Debian (a full backup with the tutorial's archive_command), and the
//! WAL header reader on segments initdb wrote with every major version this
//! machine can run. These tests fail, not skip, when PostgreSQL is missing.

mod support;

use walwarden::archive::base_backup::read_segment_header;
use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::archive::wal::{RawSegmentName, magic_for_major_version};
use walwarden::checks::health::{self, Status};
use walwarden::checks::report::ClientReport;
use walwarden::config::Config;

#[test]
fn a_real_pg15_backup_is_catalogued_without_problems() {
    let backup = support::make_real_backup("client1");
    let cache = backup.tmp.path().join("cache.json");
    let options = ScanOptions {
        cache: Some(cache),
        compute_full_facts: true,
        only: vec![],
    };
    let catalog = catalog::scan(&backup.root, &options).expect("scan the real backup root");
    let client = catalog.client("client1").expect("client1 catalogued");

    // What base.tar.gz says, against what the server says.
    assert_eq!(client.base.pg_version(), Some("15"));
    let label = client
        .base
        .label()
        .expect("backup_label read from base.tar.gz");
    assert_eq!(label.start_segment, backup.start_segment);
    assert_eq!(label.label, "base_backup");
    assert!(
        label.start_time.is_some(),
        "START TIME parsed: {}",
        label.start_time_text
    );
    let full = client.base.full.expect("pg_control read by the full pass");
    assert_eq!(
        full.system_identifier, backup.system_identifier,
        "pg_control vs pg_controldata"
    );
    let (_, pg_wal_header) = client
        .base
        .pg_wal_first
        .as_ref()
        .expect("pg_wal.tar.gz's first segment");
    assert_eq!(pg_wal_header.system_identifier, backup.system_identifier);
    assert!(
        client
            .base
            .file(walwarden::archive::folder::BaseFileKind::Manifest)
            .is_some(),
        "backup_manifest beside the tarballs"
    );

    // The archive: header-derived segment size, contiguous from the backup start to the last switch.
    assert_eq!(client.wal.segment_size, Some(16 << 20));
    let header = client.wal.first_header.expect("first segment header");
    assert_eq!(header.major_version(), Some(15));
    assert_eq!(header.system_identifier, backup.system_identifier);
    let continuity = &client.continuity;
    assert!(continuity.gaps.is_empty(), "gaps: {:?}", continuity.gaps);
    assert_eq!(
        continuity.needed_from.as_deref(),
        Some(backup.start_segment.as_str())
    );
    assert!(
        continuity.consistent_at.is_some(),
        "the .backup history file gives the stop segment"
    );
    assert_eq!(
        continuity.restorable_through.as_deref(),
        Some(backup.last_archived.as_str())
    );
    assert!(continuity.restorable_to.is_some());
    assert!(!client.wal.backup_files.is_empty());
    assert!(client.wal.backup_files.iter().all(|f| f.label.is_ok()));

    // Health: nothing wrong, judged right after the backup was made.
    let config = Config::default();
    let problems = health::assess(
        client,
        config.policy_for("client1"),
        std::time::SystemTime::now(),
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let report = ClientReport::build(client, &config, std::time::SystemTime::now());
    assert_eq!(report.status, Status::Ok);
    assert_eq!(
        report.base.system_identifier,
        Some(backup.system_identifier.to_string())
    );
    assert_eq!(
        report.wal.last.as_deref(),
        Some(backup.last_archived.as_str())
    );
}

/// The segment name initdb wrote must match what its header says it is.
fn assert_header_matches(segment: &support::InitdbSegment) {
    let header = read_segment_header(&segment.segment)
        .unwrap_or_else(|e| panic!("PostgreSQL {}: {e}", segment.major));
    assert_eq!(
        header.major_version(),
        Some(segment.major),
        "magic {:#06x}",
        header.magic
    );
    assert_eq!(Some(header.magic), magic_for_major_version(segment.major));
    assert_eq!(
        header.system_identifier, segment.system_identifier,
        "PostgreSQL {}",
        segment.major
    );
    assert_eq!(
        header.seg_size, segment.seg_size,
        "PostgreSQL {}",
        segment.major
    );
    assert_eq!(header.xlog_blcksz, segment.wal_block_size);
    let named = RawSegmentName::parse(&segment.segment_name)
        .unwrap()
        .resolve(header.seg_size)
        .unwrap();
    assert_eq!(header.segment_id(), named, "PostgreSQL {}", segment.major);
}

#[test]
fn wal_headers_of_every_available_major_version() {
    for major in [14, 15, 16, 17, 18] {
        assert_header_matches(&support::initdb_segment(major, None));
    }
}

#[test]
fn wal_headers_with_non_default_segment_sizes() {
    for (major, mb) in [(15, 1), (15, 64), (17, 2)] {
        let segment = support::initdb_segment(major, Some(mb));
        assert_eq!(segment.seg_size, mb << 20);
        assert_header_matches(&segment);
    }
}
