//! The record walk of `walwarden::records` against what real PostgreSQL says
//! of the same WAL: the last transaction's end time equals
//! `pg_last_committed_xact()` to the microsecond, and the end of WAL equals
//! what `pg_switch_wal()` returned. PostgreSQL 15 with 16 MiB segments and
//! 17 with 1 MiB ones. Fails, not skips, without PostgreSQL.

mod support;

use std::time::{Duration, SystemTime};

use walwarden::archive::records::scan_segment;
use walwarden::archive::wal::Lsn;

fn last_commit_matches(major: u32, segsize_mb: Option<u32>) {
    let bin = support::require_pg_bin(major);
    let tmp = support::pg_tempdir("walwarden-records-");
    let extra: Vec<String> = segsize_mb
        .map(|mb| format!("--wal-segsize={mb}"))
        .into_iter()
        .collect();
    let cluster = support::PgCluster::initdb(major, &bin, tmp.path(), &extra);
    cluster.append_conf("track_commit_timestamp = on\nautovacuum = off\n");
    let server = cluster.start();
    server.psql("create table t (id int primary key, pad text)");
    // Enough rows to cross pages (and, with 1 MiB segments, segments) with full-page images.
    server.psql("insert into t select g, repeat('x', 200) from generate_series(1, 20000) g");
    server.psql("checkpoint");
    server.psql("update t set pad = 'y' where id % 7 = 0");
    // A rolled-back write leaves an abort record; the commit after it is the last end.
    let aborted = server.psql("begin; insert into t values (-1, 'gone'); rollback; select 1");
    assert_eq!(aborted, "1");
    server.psql("insert into t values (0, 'last')");
    let committed_micros: i64 = server
        .psql(
            "select (extract(epoch from timestamp) * 1000000)::bigint from pg_last_committed_xact()",
        )
        .parse()
        .expect("a number of microseconds");
    let switched = server.psql("select pg_switch_wal()");
    let segment = server.psql(&format!("select pg_walfile_name('{switched}')"));
    // Read before the shutdown checkpoint recycles the segment.
    let path = cluster.data_dir.join("pg_wal").join(&segment);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    server.stop();
    let found = scan_segment(&bytes).unwrap_or_else(|e| panic!("scan {segment}: {e}"));
    let last = found
        .last_transaction
        .unwrap_or_else(|| panic!("no transaction end found in {segment}: {found:?}"));
    assert!(last.committed, "{last:?}");
    let expected =
        SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(committed_micros).unwrap());
    assert_eq!(last.time, expected, "PostgreSQL {major}: last commit time");
    assert!(found.switched, "{found:?}");
    assert_eq!(
        found.end_of_wal,
        Lsn::parse(&switched),
        "PostgreSQL {major}: end of WAL in {segment}"
    );
}

#[test]
fn last_commit_time_and_end_of_wal_match_postgresql_15() {
    last_commit_matches(15, None);
}

#[test]
fn last_commit_time_and_end_of_wal_match_postgresql_17_with_1mib_segments() {
    last_commit_matches(17, Some(1));
}

#[test]
fn the_recovery_point_of_a_real_archive_is_read_once_per_window() {
    use walwarden::archive::catalog::{self, ScanOptions};
    use walwarden::checks::recovery_point::PointCache;

    let backup = support::make_real_backup("client1");
    let client = catalog::scan_client(&backup.root, "client1", &ScanOptions::default()).unwrap();
    let mut cache = PointCache::load(None);
    let none = std::collections::BTreeSet::new();
    let point = cache
        .point_for(&client, &none)
        .expect("the fixture's last insert is a commit in the archive");
    assert!(point.transaction.committed);
    assert_eq!(
        Some(point.through.as_str()),
        client.continuity.restorable_through.as_deref()
    );
    assert_eq!(cache.reads, 1);
    assert_eq!(cache.point_for(&client, &none), Some(point.clone()));
    assert_eq!(cache.reads, 1, "an unchanged window is not read again");
    // The fixture's marker row was the last write: its commit time is the point.
    let server = backup.cluster.start();
    let marker_micros: u64 = server
        .psql(
            "select (extract(epoch from ts) * 1000000)::bigint from walwarden_marker where id = 1",
        )
        .parse()
        .unwrap();
    server.stop();
    let point_micros = point
        .transaction
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    // The row's clock_timestamp() is taken before its commit record is written.
    assert!(
        point_micros >= marker_micros && point_micros - marker_micros < 5_000_000,
        "commit at {point_micros}, row stamped {marker_micros}"
    );
}
