//! The recovery configuration: golden files for every major and layout
//! (tests/golden/recovery/, rewritten with `WALWARDEN_BLESS=1`), and a real
//! check that PostgreSQL 15 reads the generated settings and that the
//! restore_command it reads fetches a file through `sh` from a path with a
//! space and a single quote.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use walwarden::ops::restore::recovery_conf::{
    ArchiveLayout, RecoveryConfError, RecoveryFiles, RecoverySettings, TargetAction,
    parse_target_time, recovery_files, restore_command,
};
use walwarden::ops::walget::plan;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/recovery")
}

/// Compares `actual` with golden file `name` byte for byte, or rewrites it
/// when `WALWARDEN_BLESS=1`.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var("WALWARDEN_BLESS").as_deref() == Ok("1") {
        fs::create_dir_all(golden_dir()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with WALWARDEN_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output (first at line {}; WALWARDEN_BLESS=1 rewrites it)\n--- golden\n{expected}\n--- actual\n{actual}",
            path.display(),
            line + 1
        );
    }
}

fn render(settings: &RecoverySettings, files: &RecoveryFiles) -> String {
    let mut out = format!(
        "### PostgreSQL {}, {:?} archive in {}, restore_command {}, target {}, --set {:?}\n",
        settings.major,
        settings.layout,
        settings.archive_dir.display(),
        if settings.restore_command.is_some() {
            "walwarden wal-get"
        } else {
            "the tutorial's"
        },
        settings
            .target_time
            .map(|t| format!("{t} ({})", settings.target_action))
            .unwrap_or_else(|| "none".into()),
        settings.extra,
    );
    for (path, content) in &files.files {
        out.push_str(&format!(
            "=== {} ({} bytes)\n{content}",
            path.display(),
            content.len()
        ));
    }
    out.push_str(&format!(
        "=== appended to postgresql.auto.conf\n{}",
        files.auto_conf_append
    ));
    out
}

const TUTORIAL_WAL: &str = "/var/lib/postgresql/backups/client1/wal";
const AWKWARD_WAL: &str = "/srv/backup server/o'brien's \\ 100%/wal";
/// Where the helper and the restored data directory are, for each archive:
/// the awkward archive's restore goes to an awkward place too, so the
/// helper's line meets every quoting layer.
const HELPER: &str = "/usr/bin/walwarden";
const AWKWARD_HELPER: &str = "/opt/wal warden's \\ 100%f/walwarden";
const DATA: &str = "/var/lib/postgresql/15/main";
const AWKWARD_DATA: &str = "/srv/restore o'brien's \\ 100%p/main";

/// The line the restore writes: `walwarden wal-get` with its plan beside `data`.
fn helper_line(exe: &str, data: &str) -> String {
    plan::restore_command(Path::new(exe), &plan::plan_path(Path::new(data))).unwrap()
}

fn settings(
    major: u32,
    dir: &str,
    layout: ArchiveLayout,
    target: Option<&str>,
) -> RecoverySettings {
    let (exe, data) = if dir == AWKWARD_WAL {
        (AWKWARD_HELPER, AWKWARD_DATA)
    } else {
        (HELPER, DATA)
    };
    RecoverySettings {
        major,
        archive_dir: PathBuf::from(dir),
        layout,
        restore_command: Some(helper_line(exe, data)),
        target_timeline: if major <= 11 { "2" } else { "current" }.to_owned(),
        target_time: target.map(|t| parse_target_time(t).unwrap()),
        target_action: TargetAction::default(),
        extra: Vec::new(),
    }
}

fn set(mut s: RecoverySettings, extra: &[(&str, &str)]) -> RecoverySettings {
    s.extra = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

/// The tutorial's `gunzip -c` / `cp` line instead of the helper (the
/// benchmark's baseline, and what a `--set restore_command` replaces).
fn tutorial(mut s: RecoverySettings) -> RecoverySettings {
    s.restore_command = None;
    s
}

fn promote(mut s: RecoverySettings) -> RecoverySettings {
    s.target_action = TargetAction::Promote;
    s
}

fn cases() -> Vec<(&'static str, RecoverySettings)> {
    use ArchiveLayout::*;
    let t = Some("2026-11-25T13:28:18.022631Z");
    vec![
        (
            "pg10-compressed.txt",
            settings(10, TUTORIAL_WAL, Compressed, None),
        ),
        (
            "pg10-plain-target.txt",
            settings(10, TUTORIAL_WAL, Plain, t),
        ),
        (
            "pg10-both-awkward-path.txt",
            settings(10, AWKWARD_WAL, Both, None),
        ),
        (
            "pg11-compressed-target-promote-set.txt",
            set(
                promote(settings(11, TUTORIAL_WAL, Compressed, t)),
                &[
                    ("recovery_target_timeline", "current"),
                    ("work_mem", "64MB"),
                ],
            ),
        ),
        ("pg11-both.txt", settings(11, TUTORIAL_WAL, Both, None)),
        (
            "pg12-compressed.txt",
            settings(12, TUTORIAL_WAL, Compressed, None),
        ),
        (
            "pg12-plain-target.txt",
            settings(12, TUTORIAL_WAL, Plain, Some("2026-11-25 13:28:18")),
        ),
        (
            "pg15-compressed.txt",
            settings(15, TUTORIAL_WAL, Compressed, None),
        ),
        ("pg15-plain.txt", settings(15, TUTORIAL_WAL, Plain, None)),
        ("pg15-both-target.txt", settings(15, TUTORIAL_WAL, Both, t)),
        (
            "pg15-compressed-target-promote.txt",
            promote(settings(15, TUTORIAL_WAL, Compressed, t)),
        ),
        (
            "pg15-both-awkward-path-target.txt",
            settings(15, AWKWARD_WAL, Both, Some("2026-11-25 15:28:18+02:00")),
        ),
        (
            "pg15-set-overrides.txt",
            set(
                settings(15, TUTORIAL_WAL, Compressed, t),
                &[
                    ("recovery_target_action", "shutdown"),
                    ("port", "5433"),
                    ("application_name", r"it's a \ test"),
                ],
            ),
        ),
        (
            "pg17-compressed.txt",
            settings(17, TUTORIAL_WAL, Compressed, None),
        ),
        (
            "pg17-plain-awkward-path.txt",
            settings(17, AWKWARD_WAL, Plain, None),
        ),
        ("pg17-both-target.txt", settings(17, TUTORIAL_WAL, Both, t)),
        (
            "pg10-tutorial-both-awkward-path.txt",
            tutorial(settings(10, AWKWARD_WAL, Both, None)),
        ),
        (
            "pg15-tutorial-compressed.txt",
            tutorial(settings(15, TUTORIAL_WAL, Compressed, None)),
        ),
        (
            "pg15-tutorial-both-awkward-path-target.txt",
            tutorial(settings(
                15,
                AWKWARD_WAL,
                Both,
                Some("2026-11-25 15:28:18+02:00"),
            )),
        ),
        (
            "pg15-set-restore-command.txt",
            set(
                settings(15, TUTORIAL_WAL, Compressed, None),
                &[("restore_command", "cp /mnt/archive/%f \"%p\"")],
            ),
        ),
    ]
}

#[test]
fn recovery_files_match_the_golden_files() {
    let cases = cases();
    for (name, settings) in &cases {
        let files = recovery_files(settings).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_golden(name, &render(settings, &files));
    }
    // No stale golden file left behind.
    let mut on_disk: Vec<String> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(on_disk, names);
}

#[test]
fn the_file_kind_follows_the_major_version() {
    for major in [10, 11] {
        let files = recovery_files(&settings(
            major,
            TUTORIAL_WAL,
            ArchiveLayout::Compressed,
            None,
        ))
        .unwrap();
        assert_eq!(files.files.len(), 1);
        assert_eq!(files.files[0].0, Path::new("recovery.conf"));
        assert!(files.files[0].1.contains("restore_command = "));
        assert!(!files.auto_conf_append.contains("restore_command"));
        assert!(files.auto_conf_append.contains("archive_mode = 'off'"));
    }
    for major in [12, 13, 14, 15, 16, 17, 18] {
        let files = recovery_files(&settings(
            major,
            TUTORIAL_WAL,
            ArchiveLayout::Compressed,
            None,
        ))
        .unwrap();
        assert_eq!(
            files.files,
            vec![(PathBuf::from("recovery.signal"), String::new())]
        );
        assert!(
            files.auto_conf_append.starts_with('\n'),
            "safe to append to a file without a final newline"
        );
        assert!(files.auto_conf_append.contains("restore_command = "));
        assert!(files.auto_conf_append.contains("archive_mode = 'off'"));
    }
}

#[test]
fn bad_settings_are_refused() {
    let base = || settings(15, TUTORIAL_WAL, ArchiveLayout::Compressed, None);
    let err = |s: RecoverySettings| recovery_files(&s).unwrap_err();
    assert_eq!(
        err(RecoverySettings { major: 9, ..base() }),
        RecoveryConfError::UnsupportedMajor(9)
    );
    assert!(matches!(
        err(RecoverySettings {
            archive_dir: "backups/wal".into(),
            ..base()
        }),
        RecoveryConfError::RelativeArchiveDir(_)
    ));
    assert!(matches!(
        err(RecoverySettings {
            archive_dir: "/srv/a\nb".into(),
            ..base()
        }),
        RecoveryConfError::ControlCharInArchiveDir(_)
    ));
    assert!(matches!(
        err(set(base(), &[("Port", "1")])),
        RecoveryConfError::BadKey(_)
    ));
    assert!(matches!(
        err(set(base(), &[("port", "1\n2")])),
        RecoveryConfError::BadValue(_)
    ));
    assert!(matches!(
        err(set(base(), &[("port", "1"), ("port", "2")])),
        RecoveryConfError::DuplicateKey(_)
    ));
    let message = err(set(base(), &[("a-b", "1")])).to_string();
    assert!(message.contains("a-b"), "{message}");
}

// ---- the real check: PostgreSQL 15 parses the file, sh runs the command ----

/// What PostgreSQL does to restore_command before handing it to the shell
/// (`%f` file name, `%p` path relative to the data directory, `%%` a percent).
fn substitute(command: &str, file: &str, path: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str(file),
            Some('p') => out.push_str(path),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `postgres -C NAME` on a directory holding an empty postgresql.conf and
/// `auto_conf`: the value exactly as the server reads it.
fn pg15_reads(dir: &Path, auto_conf: &str, name: &str) -> String {
    let bin = support::require_pg_bin(15);
    let conf = dir.join("conf");
    fs::create_dir_all(&conf).unwrap();
    fs::write(conf.join("postgresql.conf"), "").unwrap();
    fs::write(conf.join("postgresql.auto.conf"), auto_conf).unwrap();
    // -C first: PostgreSQL then allows root (read-only use).
    let out = support::pg::pg_command(&bin, "postgres")
        .arg("-C")
        .arg(name)
        .arg("-D")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PostgreSQL 15 refused the generated settings:\n{auto_conf}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Runs `command` as PostgreSQL would for `file`, in `data`, as the
/// PostgreSQL OS user; returns (success, restored bytes, stderr).
fn fetch(command: &str, data: &Path, file: &str) -> (bool, Option<Vec<u8>>, String) {
    let target = data.join("pg_wal/RECOVERYXLOG");
    let _ = fs::remove_file(&target);
    let shell = substitute(command, file, "pg_wal/RECOVERYXLOG");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&shell).current_dir(data);
    let out = support::run_as_pg_user(&mut sh);
    let restored = fs::read(&target).ok();
    (
        out.status.success(),
        restored,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pg15_reads_the_generated_restore_command_and_sh_fetches_files_from_an_awkward_path() {
    let tmp = support::pg_tempdir("walwarden-recovery-conf-");
    let root = tmp.path().join("backup server o'brien's 100%f \\ dir");
    let wal = root.join("wal");
    let data = tmp.path().join("data");
    fs::create_dir_all(&wal).unwrap();
    let plain_name = "000000010000000000000007";
    let gz_name = "000000010000000000000008";
    let both_name = "000000010000000000000009";
    let missing_name = "00000001000000000000000A";
    let plain_bytes = b"plain segment 7 \x00\x01\xff".repeat(1000);
    let gz_bytes = b"compressed segment 8 \xd1\x10".repeat(1000);
    fs::write(wal.join(plain_name), &plain_bytes).unwrap();
    fs::write(wal.join(format!("{gz_name}.gz")), gzip(&gz_bytes)).unwrap();
    // Both forms present: the .gz one wins.
    fs::write(wal.join(format!("{both_name}.gz")), gzip(b"from the gz")).unwrap();
    fs::write(wal.join(both_name), b"from the plain file").unwrap();
    for dir in [&root, &wal] {
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // The data directory belongs to the PostgreSQL user, as in a restore.
    let mkdir = support::run_as_pg_user(Command::new("mkdir").arg("-p").arg(data.join("pg_wal")));
    assert!(
        mkdir.status.success(),
        "{}",
        String::from_utf8_lossy(&mkdir.stderr)
    );

    let target = parse_target_time("2026-11-25T13:28:18.022631Z").unwrap();
    for layout in [
        ArchiveLayout::Compressed,
        ArchiveLayout::Plain,
        ArchiveLayout::Both,
    ] {
        let settings = RecoverySettings {
            major: 15,
            archive_dir: wal.clone(),
            layout,
            restore_command: None,
            target_timeline: "2".to_owned(),
            target_time: Some(target),
            target_action: TargetAction::Pause,
            extra: vec![("application_name".into(), "it's \\ restored".into())],
        };
        let files = recovery_files(&settings).unwrap();
        let append = &files.auto_conf_append;
        let command = pg15_reads(tmp.path(), append, "restore_command");
        assert_eq!(
            command,
            restore_command(&wal, layout),
            "{layout:?}: PostgreSQL reads back the command"
        );
        assert_eq!(
            pg15_reads(tmp.path(), append, "recovery_target_time"),
            "2026-11-25 13:28:18.022631+00"
        );
        assert_eq!(
            pg15_reads(tmp.path(), append, "recovery_target_action"),
            "pause"
        );
        assert_eq!(pg15_reads(tmp.path(), append, "archive_mode"), "off");
        assert_eq!(
            pg15_reads(tmp.path(), append, "recovery_target_timeline"),
            "2"
        );
        // Settings an earlier restore or a standby left in the base backup's
        // postgresql.auto.conf are reset by the lines appended after them.
        let inherited = format!(
            "primary_conninfo = 'host=old-primary port=5432'\nprimary_slot_name = 'replica1'\n\
             recovery_target_name = 'before_upgrade'\nrecovery_min_apply_delay = '1h'\n\
             archive_cleanup_command = 'pg_archivecleanup /backups/wal %r'\n{append}"
        );
        for (name, reset) in [
            ("primary_conninfo", ""),
            ("primary_slot_name", ""),
            ("recovery_target_name", ""),
            ("recovery_min_apply_delay", "0"),
            ("archive_cleanup_command", ""),
            // The restore's own target comes after the resets and wins.
            ("recovery_target_time", "2026-11-25 13:28:18.022631+00"),
        ] {
            assert_eq!(pg15_reads(tmp.path(), &inherited, name), reset, "{name}");
        }
        assert_eq!(
            pg15_reads(tmp.path(), append, "application_name"),
            "it's \\ restored"
        );

        let (ok, restored, stderr) = fetch(&command, &data, missing_name);
        assert!(
            !ok,
            "{layout:?}: a missing file must fail so PostgreSQL knows it is absent ({stderr})"
        );
        assert!(
            stderr.contains("No such file or directory"),
            "{layout:?}: {stderr}"
        );
        assert!(restored.is_none_or(|r| r.is_empty()), "{layout:?}");

        if layout != ArchiveLayout::Plain {
            let (ok, restored, stderr) = fetch(&command, &data, gz_name);
            assert!(ok, "{layout:?} .gz: {stderr}");
            assert_eq!(restored.as_deref(), Some(&gz_bytes[..]), "{layout:?} .gz");
        }
        if layout != ArchiveLayout::Compressed {
            let (ok, restored, stderr) = fetch(&command, &data, plain_name);
            assert!(ok, "{layout:?} plain: {stderr}");
            assert_eq!(
                restored.as_deref(),
                Some(&plain_bytes[..]),
                "{layout:?} plain"
            );
        }
        if layout == ArchiveLayout::Both {
            let (ok, restored, stderr) = fetch(&command, &data, both_name);
            assert!(ok, "{stderr}");
            assert_eq!(restored.as_deref(), Some(&b"from the gz"[..]));
        }
    }
}

#[test]
fn pg15_reads_the_recovery_conf_text_of_10_and_11_the_same_way() {
    // recovery.conf uses the same parser as postgresql.conf: check the quoting of
    // the 10/11 file with the 15 parser (10 and 11 binaries are not available).
    let tmp = support::pg_tempdir("walwarden-recovery-conf-11-");
    let wal = PathBuf::from(AWKWARD_WAL);
    for layout in [
        ArchiveLayout::Compressed,
        ArchiveLayout::Plain,
        ArchiveLayout::Both,
    ] {
        let files = recovery_files(&tutorial(settings(
            11,
            AWKWARD_WAL,
            layout,
            Some("2026-11-25 13:28:18"),
        )))
        .unwrap();
        let conf = &files.files[0].1;
        assert_eq!(
            pg15_reads(tmp.path(), conf, "restore_command"),
            restore_command(&wal, layout)
        );
        assert_eq!(
            pg15_reads(tmp.path(), conf, "recovery_target_time"),
            "2026-11-25 13:28:18+00"
        );
    }
}

/// The helper's line, the one every restore writes: PostgreSQL 15 reads it
/// back exactly, for 12+ (postgresql.auto.conf) and 10/11 (recovery.conf's
/// text), and once PostgreSQL's `%f`/`%p` are replaced, `sh` run as the
/// PostgreSQL user starts the program at an awkward path (`'`, `\`, `%`,
/// spaces) with exactly `wal-get --plan PLAN FILE PATH`, the plan path
/// awkward too.
#[test]
fn pg15_reads_the_helper_line_and_sh_hands_it_exactly_its_arguments() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = support::pg_tempdir("walwarden-recovery-conf-helper-");
    let awkward = tmp.path().join("wal warden's \\ 100%f $HOME");
    let data = tmp.path().join("restore o'brien's \\ 100%p").join("main");
    fs::create_dir_all(&awkward).unwrap();
    fs::create_dir_all(data.join("pg_wal")).unwrap();
    let exe = awkward.join("print-args");
    fs::write(
        &exe,
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .unwrap();
    for dir in [tmp.path(), awkward.as_path(), data.parent().unwrap(), &data] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let plan_path = plan::plan_path(&data);
    let line = plan::restore_command(&exe, &plan_path).unwrap();
    for major in [15, 11] {
        let settings = RecoverySettings {
            major,
            archive_dir: PathBuf::from(AWKWARD_WAL),
            layout: ArchiveLayout::Compressed,
            restore_command: Some(line.clone()),
            target_timeline: "current".to_owned(),
            target_time: None,
            target_action: TargetAction::Pause,
            extra: Vec::new(),
        };
        let files = recovery_files(&settings).unwrap();
        let text = if major >= 12 {
            files.auto_conf_append.clone()
        } else {
            files.files[0].1.clone()
        };
        let command = pg15_reads(tmp.path(), &text, "restore_command");
        assert_eq!(
            command, line,
            "PostgreSQL reads back the helper's line ({major})"
        );

        let shell = substitute(&command, "000000010000000000000007", "pg_wal/RECOVERYXLOG");
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(&shell).current_dir(&data);
        let out = support::run_as_pg_user(&mut sh);
        assert!(out.status.success(), "{shell}: {out:?}");
        let args = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            args.lines().collect::<Vec<_>>(),
            [
                "wal-get",
                "--plan",
                plan_path.to_str().unwrap(),
                "000000010000000000000007",
                "pg_wal/RECOVERYXLOG"
            ],
            "{shell}"
        );
    }
}
