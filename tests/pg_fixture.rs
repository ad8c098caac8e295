//! Smoke tests of the real-PostgreSQL fixtures in tests/support: they make a
//! real PostgreSQL 15 backup + WAL archive and initdb segments of PostgreSQL
//! 14..=18, and check them byte by byte. These tests need the binaries that
//! `.ci/test` installs/fetches and FAIL (never skip) without them.

mod support;

use std::fs;
use std::io::Read;
use std::path::Path;

use support::{
    InitdbSegment, PgCluster, initdb_segment, make_real_backup, make_real_backup_major, pg_bin_dir,
    pg_tempdir, require_pg_bin,
};

/// XLOG_PAGE_MAGIC of each major (src/include/access/xlog_internal.h of that
/// release; 14..=18 also confirmed on real initdb output by the tests below).
fn expected_magic(major: u32) -> u16 {
    match major {
        10 => 0xD097,
        11 => 0xD098,
        12 => 0xD101,
        13 => 0xD106,
        14 => 0xD10D,
        15 => 0xD110,
        16 => 0xD113,
        17 => 0xD116,
        18 => 0xD118,
        _ => panic!("no XLOG_PAGE_MAGIC known for PostgreSQL {major}"),
    }
}

const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const MIB: u32 = 1024 * 1024;

/// XLogLongPageHeaderData (40 bytes, little-endian), parsed by hand.
#[derive(Debug)]
struct LongHeader {
    magic: u16,
    info: u16,
    tli: u32,
    pageaddr: u64,
    rem_len: u32,
    sysid: u64,
    seg_size: u32,
    xlog_blcksz: u32,
}

fn parse_long_header(b: &[u8]) -> LongHeader {
    assert!(
        b.len() >= 40,
        "a segment must hold at least 40 bytes, got {}",
        b.len()
    );
    let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    LongHeader {
        magic: u16_at(0),
        info: u16_at(2),
        tli: u32_at(4),
        pageaddr: u64_at(8),
        rem_len: u32_at(16),
        sysid: u64_at(24),
        seg_size: u32_at(32),
        xlog_blcksz: u32_at(36),
    }
}

/// Segment file name -> (timeline, segment number) for a given segment size.
fn segment_number(name: &str, seg_size: u32) -> (u32, u64) {
    assert_eq!(name.len(), 24, "segment name {name:?}");
    let tli = u32::from_str_radix(&name[0..8], 16).unwrap();
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    let per_log = 0x1_0000_0000u64 / seg_size as u64;
    (tli, log * per_log + seg)
}

fn segment_name(tli: u32, segno: u64, seg_size: u32) -> String {
    let per_log = 0x1_0000_0000u64 / seg_size as u64;
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
    out
}

/// First 8 bytes of a pg_control file = system identifier.
fn pg_control_sysid(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[0..8].try_into().unwrap())
}

fn check_initdb_segment(seg: &InitdbSegment, expected_seg_size: u32) {
    let major = seg.major;
    let bytes = fs::read(&seg.segment).unwrap();
    assert_eq!(
        seg.seg_size, expected_seg_size,
        "pg_controldata segment size (PG {major})"
    );
    assert_eq!(
        bytes.len(),
        expected_seg_size as usize,
        "segment file length (PG {major})"
    );
    assert!(
        seg.segment
            .ends_with(format!("pg_wal/{}", seg.segment_name))
    );
    if expected_seg_size >= 8 * MIB {
        // initdb's WAL fits in the first segment.
        assert_eq!(seg.segment_name, "000000010000000000000001");
    }
    let (seg_tli, segno) = segment_number(&seg.segment_name, expected_seg_size);
    assert_eq!(seg_tli, 1);

    let h = parse_long_header(&bytes);
    assert_eq!(
        h.magic,
        expected_magic(major),
        "XLOG_PAGE_MAGIC of PostgreSQL {major}: file has {:#06X}",
        h.magic
    );
    assert_eq!(
        bytes[0..2],
        expected_magic(major).to_le_bytes(),
        "first 2 bytes (PG {major})"
    );
    assert_ne!(
        h.info & XLP_LONG_HEADER,
        0,
        "first page has a long header: {h:?}"
    );
    assert_eq!(h.tli, 1, "{h:?}");
    assert_eq!(
        h.pageaddr,
        segno * expected_seg_size as u64,
        "segment start LSN: {h:?}"
    );
    // A record continued from the previous segment <=> xlp_rem_len > 0.
    assert_eq!(
        h.info & XLP_FIRST_IS_CONTRECORD != 0,
        h.rem_len > 0,
        "{h:?}"
    );
    assert_ne!(seg.system_identifier, 0, "system identifier (PG {major})");
    assert_eq!(
        h.sysid, seg.system_identifier,
        "xlp_sysid == pg_controldata (PG {major})"
    );
    assert_eq!(h.seg_size, expected_seg_size, "xlp_seg_size (PG {major})");
    assert_eq!(
        h.xlog_blcksz, seg.wal_block_size,
        "xlp_xlog_blcksz (PG {major})"
    );
    assert_eq!(h.xlog_blcksz, 8192, "xlp_xlog_blcksz (PG {major})");

    let control = fs::read(seg.data_dir.join("global/pg_control")).unwrap();
    assert_eq!(
        pg_control_sysid(&control),
        seg.system_identifier,
        "pg_control sysid (PG {major})"
    );
    assert_eq!(
        fs::read_to_string(seg.data_dir.join("PG_VERSION"))
            .unwrap()
            .trim(),
        major.to_string()
    );
}

#[test]
fn initdb_segment_pg14() {
    check_initdb_segment(&initdb_segment(14, None), 16 * MIB);
}

#[test]
fn initdb_segment_pg15() {
    check_initdb_segment(&initdb_segment(15, None), 16 * MIB);
}

#[test]
fn initdb_segment_pg16() {
    check_initdb_segment(&initdb_segment(16, None), 16 * MIB);
}

#[test]
fn initdb_segment_pg17() {
    check_initdb_segment(&initdb_segment(17, None), 16 * MIB);
}

#[test]
fn initdb_segment_pg18() {
    check_initdb_segment(&initdb_segment(18, None), 16 * MIB);
}

#[test]
fn initdb_segment_with_wal_segsize() {
    check_initdb_segment(&initdb_segment(15, Some(1)), MIB);
    check_initdb_segment(&initdb_segment(17, Some(64)), 64 * MIB);
}

#[test]
fn every_tested_major_has_binaries() {
    for major in 14..=18 {
        let bin = pg_bin_dir(major).unwrap_or_else(|| {
            panic!("no PostgreSQL {major} binaries: run .ci/fetch-pg-binaries (or .ci/test)")
        });
        assert!(bin.join("initdb").is_file(), "{}", bin.display());
    }
}

#[test]
#[should_panic(expected = "PostgreSQL 11 binaries not found")]
fn missing_major_panics_with_a_clear_message() {
    initdb_segment(11, None);
}

/// Checks a real backup and its archive in depth; returns the archived segment names.
fn check_real_backup(b: &support::RealBackup, major: u32, client: &str) -> Vec<String> {
    assert_eq!(b.pg_major, major);
    assert_eq!(b.client, client);
    assert!(
        b.server_version.contains(&format!(") {major}.")),
        "{}",
        b.server_version
    );
    assert_ne!(b.system_identifier, 0);
    assert!(b.root.starts_with(b.tmp.path()));

    // base/: the two tarballs and the separate manifest (PG 13+).
    let base = b.base_dir();
    for f in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
        let p = base.join(f);
        assert!(
            p.is_file() && fs::metadata(&p).unwrap().len() > 0,
            "missing {}",
            p.display()
        );
    }

    // backup_label, and global/pg_control inside base.tar.gz.
    assert!(
        b.backup_label.contains("LABEL: base_backup"),
        "{}",
        b.backup_label
    );
    assert!(
        b.backup_label.contains("START TIMELINE: 1"),
        "{}",
        b.backup_label
    );
    assert!(
        b.backup_label
            .contains(&format!("(file {})", b.start_segment)),
        "{}",
        b.backup_label
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        fs::File::open(base.join("base.tar.gz")).unwrap(),
    ));
    let mut first_entry = None;
    let mut control = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        first_entry.get_or_insert_with(|| path.clone());
        if path == "global/pg_control" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            control = Some(bytes);
        }
    }
    assert_eq!(first_entry.as_deref(), Some("backup_label"));
    let control = control.expect("global/pg_control in base.tar.gz");
    assert_eq!(pg_control_sysid(&control), b.system_identifier);
    let live_control = fs::read(b.data_dir.join("global/pg_control")).unwrap();
    assert_eq!(pg_control_sysid(&live_control), b.system_identifier);

    // wal/: no in-flight files; a .backup history file for the start segment.
    let names = b.wal_files();
    assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
    let backup_file = names
        .iter()
        .find(|n| n.starts_with(&format!("{}.", b.start_segment)) && n.ends_with(".backup.gz"))
        .unwrap_or_else(|| panic!("no {}.*.backup.gz in {names:?}", b.start_segment));
    let history = String::from_utf8(gunzip(&b.wal_dir().join(backup_file))).unwrap();
    assert!(history.contains("STOP WAL LOCATION: "), "{history}");
    assert!(history.contains("LABEL: base_backup"), "{history}");

    // Every segment from initdb's first one to last_archived is archived, none after.
    let seg_size = 16 * MIB;
    let segments: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".gz"))
        .filter(|n| n.len() == 24)
        .map(str::to_string)
        .collect();
    let (_, last_no) = segment_number(&b.last_archived, seg_size);
    let expected: Vec<String> = (1..=last_no)
        .map(|n| segment_name(1, n, seg_size))
        .collect();
    assert_eq!(segments, expected, "archive must be gap-free");
    assert!(b.start_segment >= segments[0] && b.start_segment <= b.last_archived);
    assert!(b.last_archived >= b.last_switched);

    // Each archived segment: full size, right magic, sysid, address, sizes.
    for name in &segments {
        let bytes = gunzip(&b.wal_dir().join(format!("{name}.gz")));
        assert_eq!(bytes.len(), seg_size as usize, "{name}");
        let h = parse_long_header(&bytes);
        let (tli, segno) = segment_number(name, seg_size);
        assert_eq!(h.magic, expected_magic(major), "{name}: {h:?}");
        assert_ne!(h.info & XLP_LONG_HEADER, 0, "{name}: {h:?}");
        assert_eq!(h.tli, tli, "{name}: {h:?}");
        assert_eq!(
            h.info & XLP_FIRST_IS_CONTRECORD != 0,
            h.rem_len > 0,
            "{name}: {h:?}"
        );
        assert_eq!(h.pageaddr, segno * seg_size as u64, "{name}: {h:?}");
        assert_eq!(h.sysid, b.system_identifier, "{name}: {h:?}");
        assert_eq!(h.seg_size, seg_size, "{name}: {h:?}");
        assert_eq!(h.xlog_blcksz, 8192, "{name}: {h:?}");
    }

    // The stopped primary's last checkpoint lies after what was archived.
    let redo = &b.controldata["Latest checkpoint's REDO WAL file"];
    assert!(
        redo.as_str() > b.last_switched.as_str(),
        "redo {redo} vs {}",
        b.last_switched
    );
    assert_eq!(b.controldata["Database cluster state"], "shut down");
    segments
}

#[test]
fn real_backup_pg15() {
    let b = make_real_backup("client1");
    let segments = check_real_backup(&b, 15, "client1");
    assert!(segments.len() >= 3, "{segments:?}");
    assert!(b.tmp.path().starts_with("/tmp"));
}

#[test]
fn real_backup_pg18() {
    let b = make_real_backup_major(18, "client-18");
    check_real_backup(&b, 18, "client-18");
}

/// The Drop guard stops a server whose test panics (pg_ctl stop -m immediate).
#[test]
fn server_is_stopped_when_the_test_panics() {
    let bin = require_pg_bin(15);
    let tmp = pg_tempdir("walwarden-pg-guard-");
    let cluster = PgCluster::initdb(15, &bin, tmp.path(), &[]);
    let pid_file = cluster.data_dir.join("postmaster.pid");
    let mut postmaster_pid = 0u32;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = cluster.start();
        assert_eq!(server.psql("select 40 + 2"), "42");
        let pid_text = fs::read_to_string(&pid_file).unwrap();
        postmaster_pid = pid_text.lines().next().unwrap().trim().parse().unwrap();
        panic!("deliberate panic with the server running");
    }));
    assert!(result.is_err());
    assert_ne!(postmaster_pid, 0);
    assert!(!pid_file.exists(), "postmaster.pid is still there");
    // Gone, or a zombie waiting for a PID 1 that does not reap.
    let stat = fs::read_to_string(format!("/proc/{postmaster_pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
    assert!(
        stat.is_empty() || state == Some('Z'),
        "postmaster {postmaster_pid} still alive: {stat}"
    );
    assert!(
        cluster
            .log_tail(20)
            .contains("received immediate shutdown request"),
        "{}",
        cluster.log_tail(20)
    );
}
