//! `walwarden receive` run as sshd runs it (the real binary, SSH_ORIGINAL_COMMAND,
//! the file on stdin) on a real file system: what lands, what is refused and
//! what a refusal leaves behind (nothing but a log line). Segments come from
//! `demo::Cluster` (valid long page headers, 16 MiB); the base backup test
//! with a manifest uses a real PostgreSQL 15 pg_basebackup.

mod receive_common;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::time::Duration;

use receive_common::*;
use walwarden::archive::wal::Lsn;
use walwarden::demo::{Cluster, gzip};
use walwarden::ops::receive::RefusalCode;

fn segment(cluster: &Cluster, timeline: u32, number: u64) -> (String, Vec<u8>) {
    let id = cluster.id(timeline, number);
    (id.file_name(SEG), cluster.segment_bytes(id))
}

#[test]
fn a_segment_lands_once_and_an_identical_resend_is_accepted() {
    let root = Root::new("shop");
    let cluster = Cluster::new(7_000_000_000_000_000_001, SEG);
    let (name, bytes) = segment(&cluster, 1, 7);
    let gz = gzip_level(&bytes, 6);
    let file = format!("{name}.gz");

    assert_accepted(&root.put_wal(&file, &gz));
    assert_eq!(fs::read(root.wal().join(&file)).unwrap(), gz);
    assert_eq!(names(&root.wal()), vec![file.clone()], "no part file left");
    // The first segment taught the client its database system.
    let state = fs::read_to_string(root.client_dir().join(".walwarden/state.json")).unwrap();
    assert!(state.contains("7000000000000000001"), "{state}");

    // PostgreSQL retries after a lost exit status: the same bytes, or the
    // same segment compressed otherwise, or under its plain name: all 0.
    assert_accepted(&root.put_wal(&file, &gz));
    assert_accepted(&root.put_wal(&file, &gzip_level(&bytes, 9)));
    assert_accepted(&root.put_wal(&name, &bytes));
    assert_eq!(names(&root.wal()), vec![file.clone()]);
    assert_eq!(fs::read(root.wal().join(&file)).unwrap(), gz, "untouched");

    // Other content under the same name: refused, the stored file kept, both named.
    let mut other = bytes.clone();
    other[1_000_000] = 0x5A;
    let before = snapshot(&root.client_dir());
    let out = root.put_wal(&file, &gzip_level(&other, 6));
    assert_refused(&out, "rejected_overwrite");
    let err = stderr(&out);
    assert!(
        err.contains(&file) && err.matches("sha256").count() == 2,
        "{err}"
    );
    assert_eq!(snapshot(&root.client_dir()), before);
    let refusals = root.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].code_text, "rejected_overwrite");
    assert_eq!(refusals[0].name.as_deref(), Some(file.as_str()));
    assert!(refusals[0].reason.contains("other content"), "{refusals:?}");
    // Identical re-sends are in the log too, as duplicates, not refusals.
    let log = fs::read_to_string(root.client_dir().join(".walwarden/receive.log")).unwrap();
    assert_eq!(log.matches("\"duplicate\"").count(), 3, "{log}");
    // The dashboard and `check` see the refusal, naming the file; the
    // receiver's own folder is no stray file.
    let catalog = walwarden::archive::catalog::scan_client(
        &root.root,
        "shop",
        &walwarden::archive::catalog::ScanOptions::default(),
    )
    .unwrap();
    assert!(catalog.stray.is_empty(), "{:?}", catalog.stray);
    let problems = walwarden::checks::health::assess(
        &catalog,
        &walwarden::config::ClientPolicy::default(),
        std::time::SystemTime::now(),
    );
    let overwrite = problems
        .iter()
        .find(|p| p.code.as_str() == "rejected_overwrite")
        .unwrap_or_else(|| panic!("{problems:#?}"));
    assert_eq!(
        overwrite.severity,
        walwarden::checks::health::Status::Critical
    );
    assert!(overwrite.message.contains(&file), "{}", overwrite.message);
}

#[test]
fn segments_from_another_cluster_are_refused() {
    // Known from the base backup's pg_wal.tar.gz.
    let root = Root::new("shop");
    let ours = Cluster::new(11, SEG);
    let theirs = Cluster::new(22, SEG);
    ours.write_base_backup(
        &root.client_dir(),
        ours.id(1, 2),
        ours.id(1, 3),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let before = snapshot(&root.client_dir());
    let (name, bytes) = segment(&theirs, 1, 4);
    let out = root.put_wal(&format!("{name}.gz"), &gzip(&bytes).unwrap());
    assert_refused(&out, "foreign_segment");
    assert!(
        stderr(&out).contains("system identifier 22, this client's is 11"),
        "{}",
        text(&out)
    );
    let after = snapshot(&root.client_dir());
    let new: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    // Only the receiver's state (learnt from the base backup) is new.
    assert!(new.iter().all(|k| k.starts_with(".walwarden")), "{new:?}");
    assert!(!root.wal().join(format!("{name}.gz")).exists());
    let (name, bytes) = segment(&ours, 1, 4);
    assert_accepted(&root.put_wal(&format!("{name}.gz"), &gzip(&bytes).unwrap()));

    // No base backup: the first segment accepted decides.
    let root = Root::new("fresh");
    let (name, bytes) = segment(&theirs, 1, 9);
    assert_accepted(&root.put_wal(&format!("{name}.gz"), &gzip(&bytes).unwrap()));
    let (name, bytes) = segment(&ours, 1, 10);
    assert_refused(
        &root.put_wal(&format!("{name}.gz"), &gzip(&bytes).unwrap()),
        "foreign_segment",
    );
    assert_eq!(names(&root.wal()).len(), 1);
}

#[test]
fn damaged_and_misnamed_uploads_leave_nothing_behind() {
    let root = Root::new("shop");
    let cluster = Cluster::new(42, SEG);
    let (name, bytes) = segment(&cluster, 1, 7);
    let gz = gzip(&bytes).unwrap();
    assert_accepted(&root.put_wal(&format!("{name}.gz"), &gz));
    let history = "1\t0/8123456\tno recovery target specified\n";
    let other_timeline = cluster.segment_bytes(cluster.id(3, 9));
    let (name8, bytes8) = segment(&cluster, 1, 8);
    let gz8 = gzip(&bytes8).unwrap();
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            format!("{name8}.gz"),
            gz8[..gz8.len() / 2].to_vec(),
            "corrupt_upload",
        ),
        (
            name8.clone(),
            bytes8[..bytes8.len() - 8192].to_vec(),
            "corrupt_upload",
        ),
        (
            format!("{name8}.gz"),
            b"not a gzip stream".to_vec(),
            "corrupt_upload",
        ),
        (
            format!("{name8}.gz"),
            gzip(b"short").unwrap(),
            "corrupt_upload",
        ),
        // Segment 7's bytes under the name of segment 8.
        (format!("{name8}.gz"), gz.clone(), "misnamed_segment"),
        // A header timeline above the name's is no timeline switch.
        (
            format!("{}.gz", segment(&cluster, 2, 9).0),
            gzip(&other_timeline).unwrap(),
            "misnamed_segment",
        ),
        (
            "00000002.history.gz".into(),
            gzip(b"\xff\xfe not text").unwrap(),
            "corrupt_upload",
        ),
        (
            "00000002.history".into(),
            b"2\t0/8000000\tnot an ancestor\n".to_vec(),
            "corrupt_upload",
        ),
        (
            "00000002.history".into(),
            b"1\tnot-an-lsn\treason\n".to_vec(),
            "corrupt_upload",
        ),
        ("00000002.history".into(), Vec::new(), "corrupt_upload"),
        (
            format!("{name}.00000028.backup"),
            b"START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\n".to_vec(),
            "corrupt_upload",
        ),
    ];
    for (file, input, code) in cases {
        let before = snapshot(&root.client_dir());
        let out = root.put_wal(&file, &input);
        assert_refused(&out, code);
        assert_eq!(
            snapshot(&root.client_dir()),
            before,
            "{file} left something"
        );
    }
    assert_eq!(root.refusals().len(), 11);

    // What PostgreSQL really sends on a promotion inside segment 8 is accepted:
    // the new timeline's first segment carries its parent's header.
    let (_, parent8) = segment(&cluster, 1, 8);
    let switch = format!("{}.gz", segment(&cluster, 2, 8).0);
    assert_accepted(&root.put_wal(&switch, &gzip(&parent8).unwrap()));
    assert_accepted(&root.put_wal("00000002.history.gz", &gzip(history.as_bytes()).unwrap()));
    let label = format!(
        "START WAL LOCATION: {} (file {name})\nSTART TIMELINE: 1\nSTOP WAL LOCATION: 0/8000138 (file 000000010000000000000008)\n",
        Lsn(0x700_0028)
    );
    assert_accepted(&root.put_wal(
        &format!("{name}.00000028.backup.gz"),
        &gzip(label.as_bytes()).unwrap(),
    ));
    // The offset in the name must be the label's.
    assert_refused(
        &root.put_wal(&format!("{name}.00000030.backup"), label.as_bytes()),
        "corrupt_upload",
    );
}

#[test]
fn commands_outside_the_grammar_are_refused_and_change_nothing() {
    let root = Root::new("shop");
    let other = root.root.join("other");
    fs::create_dir_all(other.join("wal")).unwrap();
    let cluster = Cluster::new(42, SEG);
    let (name, bytes) = segment(&cluster, 1, 7);
    let gz = gzip(&bytes).unwrap();
    assert_accepted(&root.put_wal(&format!("{name}.gz"), &gz));
    fs::write(other.join("wal").join(format!("{name}.gz")), &gz).unwrap();
    let before = snapshot(&root.root);
    for (command, code) in [
        (Some("rm -rf wal".to_owned()), "not_allowed"),
        (Some(format!("cat > wal/{name}.gz")), "not_allowed"),
        (Some(format!("scp -t wal/{name}.gz")), "not_allowed"),
        (
            Some("/usr/lib/openssh/sftp-server".to_owned()),
            "not_allowed",
        ),
        (Some("internal-sftp".to_owned()), "not_allowed"),
        (None, "not_allowed"),
        (Some("ls -la wal".to_owned()), "not_allowed"),
        (Some(format!("cat ../other/wal/{name}.gz")), "not_allowed"),
        (Some(format!("put-wal ../other/wal/{name}.gz")), "bad_name"),
        (Some("put-base ../../other x".to_owned()), "bad_name"),
        (Some("put-wal".to_owned()), "not_allowed"),
        (
            Some(format!("put-wal {name}.gz; rm -rf wal")),
            "not_allowed",
        ),
    ] {
        let out = root.send(command.as_deref(), b"junk that must not land anywhere");
        assert_refused(&out, code);
        assert_eq!(
            snapshot(&root.root),
            before,
            "{command:?} changed something"
        );
    }
    let refusals = root.refusals();
    assert_eq!(refusals.len(), 12);
    assert!(refusals[0].command.contains("rm -rf wal"), "{refusals:?}");
    assert!(
        refusals
            .iter()
            .any(|r| r.command.contains("interactive shell"))
    );
    // Nothing was logged in the other client's folder.
    assert!(!other.join(".walwarden").exists());
}

#[test]
fn a_killed_upload_leaves_no_final_file_and_its_part_is_taken_over() {
    let root = Root::new("shop");
    let cluster = Cluster::new(42, SEG);
    let (name, bytes) = segment(&cluster, 1, 7);
    // Incompressible tail so the upload is long enough to be cut.
    let mut busy = bytes.clone();
    let mut x = 0x1234_5678u32;
    for byte in busy[8192..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let gz = gzip(&busy).unwrap();
    let file = format!("{name}.gz");

    // The sender dies (ssh cut): stdin ends early; refused, nothing left.
    let mut child = root.start(&format!("put-wal {file}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&gz[..gz.len() / 2]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_refused(&out, "corrupt_upload");
    assert!(names(&root.wal()).is_empty(), "{:?}", names(&root.wal()));

    // The receiver itself is killed mid-stream: no final file; its part
    // file stays until the next upload of the name takes it over.
    let mut child = root.start(&format!("put-wal {file}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&gz[..gz.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let part = root.wal().join(format!("{file}.part"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs::metadata(&part).map_or(0, |m| m.len()) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    drop(stdin);
    assert!(!root.wal().join(&file).exists());
    assert_eq!(names(&root.wal()), vec![format!("{file}.part")]);

    // PostgreSQL retries the same segment: it lands, and no part file is left.
    assert_accepted(&root.put_wal(&file, &gz));
    assert_eq!(names(&root.wal()), vec![file.clone()]);
    let mut stored = Vec::new();
    fs::File::open(root.wal().join(&file))
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert_eq!(stored, gz);
}

#[test]
fn a_quota_refuses_the_upload_that_would_pass_it() {
    let root = Root::new("shop");
    let cluster = Cluster::new(42, SEG);
    let uploads: Vec<(String, Vec<u8>)> = (7..12)
        .map(|n| {
            let (name, bytes) = segment(&cluster, 1, n);
            let mut bytes = bytes;
            // Different, barely compressible content: each upload weighs the same.
            for (i, byte) in bytes[4096..4096 + 200_000].iter_mut().enumerate() {
                *byte = ((i as u64 * 2_654_435_761 + n * 97) >> 7) as u8;
            }
            (format!("{name}.gz"), gzip(&bytes).unwrap())
        })
        .collect();
    let size = uploads[0].1.len() as u64;
    // Room for two and a half uploads beside the receiver's own small files.
    fs::write(
        &root.config,
        format!("[clients.shop]\nquota = \"{}\"\n", size * 5 / 2 + 1024),
    )
    .unwrap();
    assert_accepted(&root.put_wal(&uploads[0].0, &uploads[0].1));
    assert_accepted(&root.put_wal(&uploads[1].0, &uploads[1].1));
    let before = snapshot(&root.client_dir());
    let out = root.put_wal(&uploads[2].0, &uploads[2].1);
    assert_refused(&out, "quota_exceeded");
    assert!(stderr(&out).contains("quota"), "{}", text(&out));
    let after = snapshot(&root.client_dir());
    let wal = |s: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>| {
        s.keys()
            .filter(|k| k.starts_with("wal"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        wal(&after),
        wal(&before),
        "the refused upload left something in wal/"
    );
    // An identical re-send of a stored segment still answers 0 at the quota.
    assert_accepted(&root.put_wal(&uploads[1].0, &uploads[1].1));
    assert_eq!(root.refusals()[0].code_text, "quota_exceeded");
    // A bad quota in the config refuses everything with a clear message.
    fs::write(&root.config, "[clients.shop]\nquota = \"lots\"\n").unwrap();
    let out = root.put_wal(&uploads[3].0, &uploads[3].1);
    assert_refused(&out, "misconfigured");
    assert!(
        stderr(&out).contains("clients.shop.quota"),
        "{}",
        text(&out)
    );
}

fn put_base(root: &Root, id: &str, dir: &std::path::Path) -> Vec<std::process::Output> {
    let mut outputs = Vec::new();
    for file in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
        if let Ok(bytes) = fs::read(dir.join(file)) {
            outputs.push(root.send(Some(&format!("put-base {id} {file}")), &bytes));
        }
    }
    outputs.push(root.send(Some(&format!("finish-base {id}")), b""));
    outputs
}

#[test]
fn a_new_base_backup_replaces_the_old_in_one_rename_after_it_verifies() {
    let root = Root::new("shop");
    let cluster = Cluster::new(42, SEG);
    let scratch = tempfile::tempdir().unwrap();
    let taken = std::time::SystemTime::now() - Duration::from_secs(3600);
    let one = scratch.path().join("one");
    cluster
        .write_base_backup(&one, cluster.id(1, 2), cluster.id(1, 3), taken)
        .unwrap();
    for out in put_base(&root, "one", &one.join("base")) {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let base_one = snapshot(&root.base());
    assert_eq!(
        fs::read(root.base().join("base.tar.gz")).unwrap(),
        fs::read(one.join("base/base.tar.gz")).unwrap()
    );

    let two = scratch.path().join("two");
    cluster
        .write_base_backup(
            &two,
            cluster.id(1, 9),
            cluster.id(1, 10),
            taken + Duration::from_secs(60),
        )
        .unwrap();
    let outputs = put_base(&root, "two", &two.join("base"));
    for out in &outputs {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
    }
    let said = String::from_utf8_lossy(&outputs.last().unwrap().stdout).into_owned();
    assert!(
        said.contains("now the current base backup") && said.contains("kept in"),
        "{said}"
    );
    assert_eq!(
        fs::read(root.base().join("base.tar.gz")).unwrap(),
        fs::read(two.join("base/base.tar.gz")).unwrap()
    );
    // The previous base backup is kept whole, never deleted by the receiver.
    let previous = root.client_dir().join(".walwarden/previous");
    let kept = names(&previous);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with("-one"), "{kept:?}");
    assert_eq!(snapshot(&previous.join(&kept[0])), base_one);
    assert!(names(&root.client_dir().join(".walwarden/staging")).is_empty());

    // A retried script: the same files and finish again answer 0 and change nothing.
    let before = snapshot(&root.client_dir());
    for out in put_base(&root, "two", &two.join("base")) {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_eq!(snapshot(&root.client_dir()), before);

    // A base backup that does not verify: refused at finish, the current one untouched.
    let bad = scratch.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(
        bad.join("base.tar.gz"),
        gzip(b"a gzip stream but not a tarball").unwrap(),
    )
    .unwrap();
    fs::copy(two.join("base/pg_wal.tar.gz"), bad.join("pg_wal.tar.gz")).unwrap();
    let outputs = put_base(&root, "bad", &bad);
    assert_eq!(outputs[0].status.code(), Some(0), "{}", text(&outputs[0]));
    assert_refused(outputs.last().unwrap(), "bad_base");
    assert!(stderr(outputs.last().unwrap()).contains("untouched"));
    assert_eq!(snapshot(&root.base()), snapshot(&two.join("base")));
    assert!(!root.client_dir().join(".walwarden/staging/bad").exists());

    // Another cluster's base backup: refused, the current one untouched.
    let foreign = Cluster::new(43, SEG);
    let three = scratch.path().join("three");
    foreign
        .write_base_backup(&three, foreign.id(1, 2), foreign.id(1, 3), taken)
        .unwrap();
    let base_two = snapshot(&root.base());
    let outputs = put_base(&root, "three", &three.join("base"));
    assert_refused(outputs.last().unwrap(), "foreign_base");
    assert_eq!(snapshot(&root.base()), base_two);

    // A file never sent: refused, the files already sent are kept for a retry.
    let out = root.send(
        Some("put-base four base.tar.gz"),
        &fs::read(two.join("base/base.tar.gz")).unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = root.send(Some("finish-base four"), b"");
    assert_refused(&out, "bad_base");
    assert!(
        stderr(&out).contains("pg_wal.tar.gz never arrived"),
        "{}",
        text(&out)
    );
    assert!(
        root.client_dir()
            .join(".walwarden/staging/four/base.tar.gz")
            .exists()
    );
    assert_refused(&root.send(Some("finish-base never"), b""), "no_such_base");
    // A truncated tarball is refused as it arrives.
    let tar = fs::read(two.join("base/pg_wal.tar.gz")).unwrap();
    assert_refused(
        &root.send(Some("put-base four pg_wal.tar.gz"), &tar[..tar.len() - 20]),
        "corrupt_upload",
    );
    assert_eq!(
        names(&root.client_dir().join(".walwarden/staging/four")),
        vec!["base.tar.gz"]
    );
}

#[test]
fn a_real_base_backup_is_checked_against_its_manifest() {
    let backup = support::make_real_backup("real");
    let root = Root::new("real");
    let outputs = put_base(&root, "20261125T130000Z", &backup.base_dir());
    for out in &outputs {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
    }
    let said = String::from_utf8_lossy(&outputs.last().unwrap().stdout).into_owned();
    assert!(said.contains("matched its backup_manifest"), "{said}");
    assert!(
        said.contains(&backup.system_identifier.to_string()),
        "{said}"
    );
    let state = fs::read_to_string(root.client_dir().join(".walwarden/state.json")).unwrap();
    assert!(
        state.contains(&backup.system_identifier.to_string()),
        "{state}"
    );

    // One byte changed inside a file of the tarball: gzip and tar stay valid,
    // the manifest's checksum does not match.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(backup.base_dir().join("base.tar.gz")).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let at = find_file_data(&tar, "PG_VERSION");
    tar[at] = if tar[at] == b'1' { b'9' } else { b'1' };
    let tampered = tempfile::tempdir().unwrap();
    fs::write(tampered.path().join("base.tar.gz"), gzip_level(&tar, 1)).unwrap();
    for file in ["pg_wal.tar.gz", "backup_manifest"] {
        fs::copy(backup.base_dir().join(file), tampered.path().join(file)).unwrap();
    }
    let current = snapshot(&root.base());
    let outputs = put_base(&root, "tampered", tampered.path());
    let last = outputs.last().unwrap();
    assert_refused(last, "bad_base");
    assert!(stderr(last).contains("PG_VERSION"), "{}", text(last));
    assert_eq!(snapshot(&root.base()), current);

    // Segments of that cluster are accepted; the catalog sees a sound client.
    let segment = backup.archived_segments().into_iter().last().unwrap();
    let bytes = fs::read(backup.wal_dir().join(&segment)).unwrap();
    assert_accepted(&root.put_wal(&segment, &bytes));
}

/// Where the data of `name` begins in an uncompressed tar stream.
fn find_file_data(tar: &[u8], name: &str) -> usize {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        let entry = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_owned();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&header[124..136])
                .trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap_or(0);
        if entry == name || entry == format!("./{name}") {
            return at + 512;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("{name} not in the tarball");
}

#[test]
fn the_copy_test_writes_reads_back_and_removes() {
    let root = Root::new("shop");
    let out = root.send(Some("copy-test"), b"hello from the target\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("copy-test ok: 22 bytes written, synced, renamed, read back and removed"),
        "{said}"
    );
    assert!(said.contains("wal/ writable, base/ writable"), "{said}");
    let own = names(&root.client_dir().join(".walwarden"));
    assert!(own.iter().all(|n| !n.starts_with("copy-test")), "{own:?}");
}

#[test]
fn refusal_lines_in_the_targets_log_are_diagnosed() {
    let root = Root::new("shop");
    let cluster = Cluster::new(42, SEG);
    let (name, bytes) = segment(&cluster, 1, 7);
    assert_accepted(&root.put_wal(&format!("{name}.gz"), &gzip(&bytes).unwrap()));
    let mut other = bytes.clone();
    other[5000] = 1;
    let overwrite = stderr(&root.put_wal(&format!("{name}.gz"), &gzip(&other).unwrap()));
    let foreign = stderr(&root.put_wal(
        &format!("{}.gz", segment(&Cluster::new(43, SEG), 1, 8).0),
        &gzip(&Cluster::new(43, SEG).segment_bytes(cluster.id(1, 8))).unwrap(),
    ));
    let tutorial = stderr(&root.send(
        Some(&format!(
            "set -e; test ! -f /b/shop/wal/{name}.gz; cat > /b/shop/wal/{name}.gz.part"
        )),
        b"",
    ));
    // As PostgreSQL logs an archive_command's stderr and its failure.
    let log = format!(
        "2026-11-25 13:11:53.068 UTC [9012] LOG:  checkpoint starting: time\n\
         {overwrite}2026-11-25 13:11:53.069 UTC [9012] LOG:  archive command failed with exit code 1\n\
         2026-11-25 13:11:53.069 UTC [9012] DETAIL:  The failed archive command was: gzip -c pg_wal/{name} | ssh shopbackup@b 'put-wal {name}.gz'\n\
         {foreign}2026-11-25 13:12:53.068 UTC [9012] LOG:  archive command failed with exit code 1\n\
         {tutorial}2026-11-25 13:13:53.068 UTC [9012] LOG:  archive command failed with exit code 1\n"
    );
    let failures = walwarden::pg::target::archive_failures(&log);
    let codes: Vec<&str> = failures.iter().map(|f| f.diagnosis.code).collect();
    assert_eq!(
        codes,
        vec![
            "receiver-overwrite",
            "receiver-foreign",
            "receiver-wrong-command"
        ],
        "{log}"
    );
    assert_eq!(failures[0].segment(), Some(name.as_str()));
    // Every code the receiver can print has a diagnosis of its own kind.
    for code in RefusalCode::ALL {
        let line = format!(
            "walwarden receive: refused put-wal X: because [{}]",
            code.as_str()
        );
        let found = walwarden::pg::target::receiver_refusal(&line).unwrap();
        assert!(
            found.code.starts_with("receiver-") || found.code == "disk-full",
            "{code:?}"
        );
    }
    assert!(walwarden::pg::target::receiver_refusal("gzip: x: unexpected end of file").is_none());
}
