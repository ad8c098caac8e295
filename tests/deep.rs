//! `walwarden check --deep` on a real PostgreSQL 15 backup: a clean archive
//! proves fully and is remembered; then one damage at a time, each reported
//! with its code and the exact file, and nothing else.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deep_check(root: &Path, home: &Path) -> (i32, serde_json::Value) {
    support::check::check_json(root, home, &["--deep"])
}

/// A copy of the backup root, to damage without touching the others.
fn copy_root(from: &Path, into: &Path) -> PathBuf {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
    into.to_owned()
}

fn problems(doc: &serde_json::Value) -> Vec<(String, String)> {
    support::check::first_client_problems(doc)
}

fn next_name(name: &str) -> String {
    let number = u64::from_str_radix(&name[16..24], 16).unwrap() + 1;
    format!("{}{:08X}.gz", &name[..16], number)
}

/// Damages the archive in a wal folder; returns the file it damaged.
type Damage<'a> = Box<dyn Fn(&Path) -> String + 'a>;

#[test]
fn deep_check_proves_a_clean_archive_and_names_each_damage() {
    let backup = support::make_real_backup("client1");
    let work = tempfile::tempdir().unwrap();

    // Clean: everything proven, and the second run reads nothing again.
    let home = work.path().join("home-clean");
    let (code, doc) = deep_check(&backup.root, &home);
    assert_eq!(problems(&doc), vec![], "{doc:#}");
    assert_eq!(code, 0);
    let deep = &doc["clients"][0]["deep"];
    assert_eq!(deep["verified_through"], backup.last_archived.as_str());
    assert!(deep["files_checked"].as_u64().unwrap() >= 4);
    let (_, again) = deep_check(&backup.root, &home);
    assert_eq!(
        again["clients"][0]["deep"]["files_checked"], 0,
        "remembered by name, size and mtime"
    );

    let names = backup.archived_segments();
    let middle = names[names.len() / 2].clone();
    let last = names.last().unwrap().clone();
    let cases: Vec<(&str, Damage<'_>)> = vec![
        (
            "corrupt_segment",
            Box::new(|wal: &Path| {
                let path = wal.join(&middle);
                let mut bytes = fs::read(&path).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0xFF;
                fs::write(&path, bytes).unwrap();
                middle.clone()
            }),
        ),
        (
            "corrupt_segment",
            Box::new(|wal: &Path| {
                let path = wal.join(&middle);
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
                middle.clone()
            }),
        ),
        (
            "foreign_segment",
            Box::new(|wal: &Path| {
                // A segment from a second, unrelated cluster, named as this archive's next one.
                let stranger = support::initdb_segment(15, None);
                let name = next_name(&last);
                let raw = fs::read(&stranger.segment).unwrap();
                fs::write(wal.join(&name), walwarden::demo::gzip(&raw).unwrap()).unwrap();
                name
            }),
        ),
        (
            "misnamed_segment",
            Box::new(|wal: &Path| {
                let name = next_name(&last);
                fs::copy(wal.join(&middle), wal.join(&name)).unwrap();
                name
            }),
        ),
    ];
    for (index, (code, damage)) in cases.iter().enumerate() {
        let root = copy_root(&backup.root, &work.path().join(format!("root-{index}")));
        let file = damage(&root.join("client1/wal"));
        let (exit, doc) = deep_check(&root, &work.path().join(format!("home-{index}")));
        let found = problems(&doc);
        assert_eq!(
            found.len(),
            1,
            "case {index} ({code}): exactly one problem: {found:#?}"
        );
        assert_eq!(found[0].0, *code, "case {index}: {found:#?}");
        assert!(
            found[0].1.contains(&file),
            "case {index}: names {file}: {}",
            found[0].1
        );
        assert_eq!(exit, 2, "critical");
    }

    // A byte altered inside base.tar.gz: the base backup is corrupt, nothing else.
    let root = copy_root(&backup.root, &work.path().join("root-base"));
    let tarball = root.join("client1/base/base.tar.gz");
    let mut bytes = fs::read(&tarball).unwrap();
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0x55;
    fs::write(&tarball, bytes).unwrap();
    let (exit, doc) = deep_check(&root, &work.path().join("home-base"));
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "base_corrupt");
    assert!(found[0].1.contains("base.tar.gz"), "{}", found[0].1);
    assert_eq!(exit, 2);
    assert_eq!(
        doc["clients"][0]["deep"]["manifest_verified"],
        serde_json::Value::Null,
        "a tarball that does not read to its end proves nothing about its manifest"
    );
}

/// Flips one byte of `entry`'s content inside a gzip'ed tarball, keeping
/// the tar and gzip streams valid: only a manifest can tell.
fn alter_inside_tarball(tarball: &Path, entry: &str) {
    use std::io::{Read, Write};
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(tarball).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let at = {
        let mut archive = tar::Archive::new(&tar[..]);
        let found = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_string_lossy() == entry)
            .unwrap_or_else(|| panic!("{entry} is in {}", tarball.display()));
        assert!(found.header().size().unwrap() > 0, "{entry} has content");
        found.raw_file_position() as usize
    };
    tar[at] ^= 0x01;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    fs::write(tarball, gz.finish().unwrap()).unwrap();
}

/// The first regular file with content under `base/` in base.tar.gz: a relation file.
fn some_relation_file(tarball: &Path) -> String {
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        fs::File::open(tarball).unwrap(),
    ));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| {
            e.header().entry_type().is_file()
                && e.header().size().unwrap() > 0
                && e.path().unwrap().starts_with("base/")
        })
        .map(|e| e.path().unwrap().to_string_lossy().into_owned())
        .expect("a relation file in base.tar.gz")
}

#[test]
fn deep_check_verifies_base_tar_against_backup_manifest() {
    let backup = support::make_real_backup("client1");
    let work = tempfile::tempdir().unwrap();
    assert!(
        backup.base_dir().join("backup_manifest").is_file(),
        "pg_basebackup left backup_manifest beside the tarballs"
    );

    // Clean: the manifest is read and every file matches it.
    let (code, doc) = deep_check(&backup.root, &work.path().join("home-clean"));
    assert_eq!(problems(&doc), vec![], "{doc:#}");
    assert_eq!(code, 0);
    assert_eq!(
        doc["clients"][0]["deep"]["manifest_verified"], true,
        "{doc:#}"
    );

    // One byte of a relation file changed inside base.tar.gz, streams still valid.
    let root = copy_root(&backup.root, &work.path().join("root-altered"));
    let tarball = root.join("client1/base/base.tar.gz");
    let victim = some_relation_file(&tarball);
    alter_inside_tarball(&tarball, &victim);
    let (exit, doc) = deep_check(&root, &work.path().join("home-altered"));
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "base_manifest_mismatch");
    assert!(
        found[0].1.contains(&format!("{victim}: Crc32c checksum")),
        "names {victim} and its checksum: {}",
        found[0].1
    );
    assert_eq!(exit, 2);
    assert_eq!(doc["clients"][0]["deep"]["manifest_verified"], false);

    // One byte of the manifest itself changed: its own SHA-256 fails.
    let root = copy_root(&backup.root, &work.path().join("root-manifest"));
    let manifest = root.join("client1/base/backup_manifest");
    let mut bytes = fs::read(&manifest).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&manifest, bytes).unwrap();
    let (exit, doc) = deep_check(&root, &work.path().join("home-manifest"));
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "base_manifest_mismatch");
    assert!(
        found[0]
            .1
            .contains("backup_manifest's own checksum does not match"),
        "{}",
        found[0].1
    );
    assert_eq!(exit, 2);

    // The manifest inside base.tar.gz (as pg_basebackup writes it to stdout):
    // the same altered file is found after the fact, from the kept CRC-32Cs.
    let root = copy_root(&backup.root, &work.path().join("root-inside"));
    let base = root.join("client1/base");
    embed_manifest(&base.join("base.tar.gz"), &base.join("backup_manifest"));
    fs::remove_file(base.join("backup_manifest")).unwrap();
    let (exit, doc) = deep_check(&root, &work.path().join("home-inside"));
    assert_eq!(problems(&doc), vec![], "{doc:#}");
    assert_eq!(exit, 0);
    assert_eq!(
        doc["clients"][0]["deep"]["manifest_verified"], true,
        "{doc:#}"
    );
    alter_inside_tarball(&base.join("base.tar.gz"), &victim);
    let (_, doc) = deep_check(&root, &work.path().join("home-inside"));
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "base_manifest_mismatch");
    assert!(found[0].1.contains(&victim), "{}", found[0].1);
}

/// Rewrites a gzip'ed tarball with `manifest` appended as its last entry.
fn embed_manifest(tarball: &Path, manifest: &Path) {
    use std::io::Read;
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(tarball).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let path = entry.path().unwrap().into_owned();
        builder.append_data(&mut header, path, &data[..]).unwrap();
    }
    let bytes = fs::read(manifest).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    builder
        .append_data(&mut header, "backup_manifest", &bytes[..])
        .unwrap();
    fs::write(tarball, builder.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// Timeline 2 began in segment 0x13 (its history says so): a segment named
/// 2/0x11 cannot be timeline 2's, even with a header that agrees with its
/// name. A history whose lines go backwards is reported too.
#[test]
fn deep_check_holds_segments_to_their_timeline_history() {
    use walwarden::archive::catalog::{self, ScanOptions};
    use walwarden::archive::wal::Lsn;
    use walwarden::checks::deep::{DeepCache, verify_client};
    use walwarden::demo::Cluster;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let seg = 16u32 << 20;
    let cluster = Cluster::new(7_500_000_000_000_000_001, seg);
    let dir = root.join("alpha");
    let wal = dir.join("wal");
    let now = std::time::SystemTime::now();
    cluster
        .write_base_backup(&dir, cluster.id(1, 0x10), cluster.id(1, 0x11), now)
        .unwrap();
    for (tli, segno) in [
        (1, 0x10),
        (1, 0x11),
        (1, 0x12),
        (1, 0x13),
        (2, 0x13),
        (2, 0x14),
    ] {
        cluster
            .archive_segment(&wal, cluster.id(tli, segno), Some(now))
            .unwrap();
    }
    let switch = Lsn(0x13 * seg as u64 + 0x100);
    cluster.write_history(&wal, 2, &[(1, switch)], now).unwrap();
    let deep = |root: &Path| {
        let catalog = catalog::scan(root, &ScanOptions::default()).unwrap();
        let report = verify_client(
            &catalog.clients[0],
            &mut DeepCache::load(None),
            now,
            &mut |_, _| {},
        );
        report
            .problems
            .iter()
            .map(|p| (p.code.as_str().to_owned(), p.message.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(deep(&root), vec![], "a consistent switch");

    cluster
        .archive_segment(&wal, cluster.id(2, 0x11), Some(now))
        .unwrap();
    let found = deep(&root);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "timeline_mismatch");
    assert!(
        found[0]
            .1
            .starts_with("wal/000000020000000000000011.gz is on timeline 2 before it began")
            && found[0].1.contains("000000020000000000000013"),
        "{}",
        found[0].1
    );

    fs::remove_file(wal.join("000000020000000000000011.gz")).unwrap();
    cluster
        .write_history(&wal, 3, &[(2, Lsn(0x14 * seg as u64)), (1, switch)], now)
        .unwrap();
    let found = deep(&root);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "timeline_mismatch");
    assert!(found[0].1.contains("00000003.history.gz"), "{}", found[0].1);
}

/// The manifest's WAL range must be in pg_wal.tar.gz or the archive: a
/// manifest written here for a demo backup (sizes only, Checksum-Algorithm
/// NONE, as `pg_basebackup --manifest-checksums=none` writes) passes while
/// its range lies in pg_wal.tar.gz, and names the first segment that is
/// nowhere once the range reaches past both.
#[test]
fn deep_check_finds_the_manifests_wal_range() {
    use sha2::Digest;
    use std::io::Read;
    use walwarden::archive::catalog::{self, ScanOptions};
    use walwarden::checks::deep::{DeepCache, verify_client};
    use walwarden::demo::Cluster;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let seg = 16u32 << 20;
    let cluster = Cluster::new(7_600_000_000_000_000_001, seg);
    let dir = root.join("alpha");
    let now = std::time::SystemTime::now();
    cluster
        .write_base_backup(&dir, cluster.id(1, 0x20), cluster.id(1, 0x21), now)
        .unwrap();
    // The archive holds 0x21 and 0x22; pg_wal.tar.gz holds 0x20 and 0x21.
    for segno in [0x21, 0x22] {
        cluster
            .archive_segment(&dir.join("wal"), cluster.id(1, segno), Some(now))
            .unwrap();
    }
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        fs::File::open(dir.join("base/base.tar.gz")).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.push(format!(
            "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-11-25 13:03:00 GMT\", \"Checksum-Algorithm\": \"NONE\" }}",
            data.len()
        ));
    }
    let write_manifest = |end: &str, system: Option<u64>| {
        let version = match system {
            Some(id) => format!("2,\n\"System-Identifier\": {id}"),
            None => "1".to_owned(),
        };
        let head = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": {version},\n\"Files\": [\n{}\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/20000028\", \"End-LSN\": \"{end}\" }}\n],\n",
            files.join(",\n")
        );
        let sum: String = sha2::Sha256::digest(head.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fs::write(
            dir.join("base/backup_manifest"),
            format!("{head}\"Manifest-Checksum\": \"{sum}\"}}\n"),
        )
        .unwrap();
    };
    let deep = || {
        let catalog = catalog::scan(&root, &ScanOptions::default()).unwrap();
        verify_client(
            &catalog.clients[0],
            &mut DeepCache::load(None),
            now,
            &mut |_, _| {},
        )
    };

    // 0x20..0x22: in pg_wal.tar.gz or the archive.
    write_manifest("0/22000100", None);
    let report = deep();
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.manifest_verified, Some(true));

    // 0x20..0x24: 0x23 and 0x24 are nowhere.
    write_manifest("0/24000100", None);
    let report = deep();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].code.as_str(), "base_manifest_mismatch");
    assert!(
        report.problems[0].message.contains(
            "2 segments (the first 000000010000000000000023) of the manifest's WAL range 0/20000028..0/24000100 on timeline 1 are neither"
        ),
        "{}",
        report.problems[0].message
    );
    assert_eq!(report.manifest_verified, Some(false));

    // A range of 2^40 segments is counted, not walked nor cut to "… and 1 more".
    write_manifest("FFFFFFFF/FFFFFFFF", None);
    let report = deep();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let message = &report.problems[0].message;
    assert!(
        message.contains("1099511627741 segments (the first 000000010000000000000023)")
            && !message.contains("more"),
        "{message}"
    );

    // Version 2 (PostgreSQL 17+) names the system: it must be pg_control's.
    write_manifest("0/22000100", Some(7_600_000_000_000_000_001));
    let report = deep();
    assert_eq!(report.problems, vec![]);
    write_manifest("0/22000100", Some(42));
    let report = deep();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        report.problems[0].message.contains(
            "backup_manifest is for database system 42, global/pg_control in base.tar.gz says 7600000000000000001"
        ),
        "{}",
        report.problems[0].message
    );
}

/// The parallel reader keeps the cache's promise: a second run over an
/// unchanged archive reads no file, one changed file is the only one re-read,
/// and its verdict lands on that file whichever worker read it.
#[test]
fn deep_check_rereads_only_what_changed() {
    use walwarden::archive::catalog::{self, ScanOptions};
    use walwarden::checks::deep::{DeepCache, verify_client};
    use walwarden::demo::Cluster;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let seg = 16u32 << 20;
    let cluster = Cluster::new(7_700_000_000_000_000_001, seg);
    let dir = root.join("alpha");
    let now = std::time::SystemTime::now();
    cluster
        .write_base_backup(&dir, cluster.id(1, 0x30), cluster.id(1, 0x31), now)
        .unwrap();
    for segno in 0x30..0x40 {
        cluster
            .archive_segment(&dir.join("wal"), cluster.id(1, segno), Some(now))
            .unwrap();
    }
    let cache_path = tmp.path().join("deep.json");
    let run = || {
        let catalog = catalog::scan(&root, &ScanOptions::default()).unwrap();
        let mut cache = DeepCache::load(Some(&cache_path));
        let report = verify_client(&catalog.clients[0], &mut cache, now, &mut |_, _| {});
        cache.save().unwrap();
        report
    };
    let first = run();
    assert_eq!(
        first.files_checked,
        16 + 2,
        "every segment and both tarballs"
    );
    assert_eq!(first.problems, vec![]);
    assert_eq!(
        first.verified_through.as_deref(),
        Some("00000001000000000000003F")
    );

    let second = run();
    assert_eq!(second.files_checked, 0, "nothing read again");
    assert_eq!(second.files_remembered, 16 + 2);

    // What the dashboard shows at start, from memory only: the same proof.
    let remembered = |root: &Path| {
        let catalog = catalog::scan(root, &ScanOptions::default()).unwrap();
        walwarden::checks::deep::proven_from_memory(
            &catalog.clients[0],
            &DeepCache::load(Some(&cache_path)),
        )
    };
    let memory = remembered(&root).expect("the client is remembered");
    assert_eq!(
        memory.verified_through.as_deref(),
        Some("00000001000000000000003F")
    );
    assert_eq!(memory.files_remembered, 16);
    assert!(memory.verified_at.is_some());
    // A segment no check has read yet ends the proven run without being opened.
    cluster
        .archive_segment(&dir.join("wal"), cluster.id(1, 0x40), Some(now))
        .unwrap();
    let memory = remembered(&root).unwrap();
    assert_eq!(
        memory.verified_through.as_deref(),
        Some("00000001000000000000003F")
    );
    assert_eq!(memory.files_remembered, 16);
    fs::remove_file(dir.join("wal/000000010000000000000040.gz")).unwrap();

    // 0x35 cut short (a new size): read again, and judged as itself.
    let victim = dir.join("wal/000000010000000000000035.gz");
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() - 8]).unwrap();
    let third = run();
    assert_eq!(third.files_checked, 1);
    assert_eq!(third.problems.len(), 1, "{:#?}", third.problems);
    assert_eq!(third.problems[0].code.as_str(), "corrupt_segment");
    assert!(
        third.problems[0]
            .message
            .contains("000000010000000000000035.gz")
    );
    assert_eq!(
        third.verified_through.as_deref(),
        Some("000000010000000000000034")
    );
}
