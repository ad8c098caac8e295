//! `walwarden verify` end to end: the real binary watching an archive that a
//! REAL PostgreSQL 15 fills with the tutorial's compressed archive_command
//! while the test forces `pg_switch_wal()` every two seconds.
//!
//! Three scenarios: archiving works (PASS); archive_command is broken (FAIL,
//! saying nothing arrived); a segment from another cluster lands in the
//! folder (FAIL on the system identifier). Each takes about 15 s plus the
//! fixture. Servers are stopped by the fixtures' Drop guards, also on panic.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{RealBackup, RunningServer, make_real_backup};
use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::archive::wal::RawSegmentName;
use walwarden::checks::integrity::{check_base_backup, check_segment};
use walwarden::checks::verify::{ItemState, Verification, VerifySettings};
use walwarden::demo::Cluster;

const CLIENT: &str = "client1";
/// How often the test forces a segment switch (the "archive_timeout" of the check).
const SWITCH_EVERY: Duration = Duration::from_secs(2);
/// The verification window given to `walwarden verify`.
const WINDOW: &str = "12s";
/// Far more than the window: a verify that hangs fails instead of blocking the suite.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(90);
/// The foreign cluster's system identifier in scenario 3.
const FOREIGN_SYSTEM: u64 = 12345;

/// The real backup and its primary running again. Fields drop in order: the
/// server is stopped before the temp dir holding its data is removed.
struct Primary {
    server: RunningServer,
    backup: RealBackup,
    /// HOME and XDG dirs for the walwarden process (its cache lands here).
    home: tempfile::TempDir,
}

/// A real PostgreSQL 15 base backup and archive for `client1`, then the
/// primary started again; `extra_conf` is appended to postgresql.conf first
/// (a later setting wins over the fixture's archive_command).
fn primary(extra_conf: Option<String>) -> Primary {
    let backup = make_real_backup(CLIENT);
    if let Some(conf) = extra_conf {
        backup.cluster.append_conf(&conf);
    }
    let server = backup.cluster.start();
    Primary {
        server,
        backup,
        home: tempfile::tempdir().unwrap(),
    }
}

/// Starts `walwarden verify client1 --json` with a short window (does not wait).
fn spawn_verify(root: &Path, home: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .arg("verify")
        .arg(CLIENT)
        .arg("--root")
        .arg(root)
        .args([
            "--window",
            WINDOW,
            "--expect-interval",
            "3s",
            "--slack",
            "3s",
            "--min-segments",
            "2",
            "--json",
        ])
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .env_remove("WALWARDEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start walwarden verify")
}

/// Waits (bounded) for the verify process and returns its output.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(VERIFY_TIMEOUT) {
        Ok(output) => {
            waiter.join().unwrap();
            output.expect("wait for walwarden verify")
        }
        Err(_) => {
            // Our own child, by its pid.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let _ = waiter.join();
            panic!("walwarden verify (pid {pid}) did not finish within {VERIFY_TIMEOUT:?}");
        }
    }
}

/// Sets the flag when dropped: the switcher stops even when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `during` while another thread writes a row and forces
/// `pg_switch_wal()` every `SWITCH_EVERY` (a switch with no new WAL does
/// nothing). Returns what `during` returned and the segments switched.
fn with_switches<T>(server: &RunningServer, during: impl FnOnce() -> T) -> (T, Vec<String>) {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let switcher = scope.spawn(|| {
            let mut switched = Vec::new();
            // Let verify start its watcher and scan first.
            let mut next = Instant::now() + Duration::from_secs(1);
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
                next += SWITCH_EVERY;
                server.psql("create table if not exists t(i int); insert into t values (1)");
                switched.push(server.switch_wal());
            }
            switched
        });
        let result = {
            let _stop = StopOnDrop(&stop);
            during()
        };
        let switched = switcher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (result, switched)
    })
}

/// The JSON report on stdout, after checking the exit code.
fn report(output: &Output, code: i32) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "walwarden verify's exit code\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\n--- stderr ---\n{stderr}"))
}

/// Item `index` (0-based) of the checklist: (state, detail).
fn item(report: &Value, index: usize) -> (&str, &str) {
    let item = &report["items"][index];
    (
        item["state"]
            .as_str()
            .unwrap_or_else(|| panic!("item {index}: {report:#}")),
        item["detail"].as_str().unwrap_or_default(),
    )
}

fn arrivals(report: &Value) -> &Vec<Value> {
    report["arrivals"]
        .as_array()
        .unwrap_or_else(|| panic!("no arrivals array: {report:#}"))
}

#[test]
fn working_archiving_passes_the_verification() {
    let p = primary(None);
    let root = p.backup.root.clone();
    let started = Instant::now();
    let (output, switched) =
        with_switches(&p.server, || finish(spawn_verify(&root, p.home.path())));
    let elapsed = started.elapsed();
    let report = report(&output, 0);

    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["client"], CLIENT);
    for index in 0..4 {
        assert_eq!(
            item(&report, index).0,
            "pass",
            "item {}: {report:#}",
            index + 1
        );
    }
    assert!(
        item(&report, 0)
            .1
            .contains(&p.backup.system_identifier.to_string()),
        "the base item names the system identifier read from pg_control: {report:#}"
    );
    let arrivals = arrivals(&report);
    assert!(arrivals.len() >= 2, "at least 2 arrivals: {report:#}");
    for arrival in arrivals {
        let name = arrival["name"].as_str().unwrap();
        let stem = name
            .strip_suffix(".gz")
            .expect("the tutorial's archive is gzip'ed");
        assert!(
            switched.iter().any(|s| s == stem),
            "{name} is one of the segments the test switched ({switched:?})"
        );
        assert!(
            stem > p.backup.last_archived.as_str(),
            "{name} is newer than the archive's last segment before the window"
        );
        assert_eq!(arrival["failure"], Value::Null, "{arrival:#}");
        assert_eq!(arrival["check"]["stream_error"], Value::Null, "{arrival:#}");
        assert!(arrival["check"]["size"].as_u64().unwrap() > 0);
    }
    let names: Vec<&str> = arrivals
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "arrivals in order, each once");
    assert!(
        elapsed >= Duration::from_secs(12) && elapsed < Duration::from_secs(40),
        "verify took {elapsed:?} for a 12 s window"
    );
    eprintln!(
        "scenario 1: {} arrivals, verify ran {elapsed:?}",
        arrivals.len()
    );
}

#[test]
fn broken_archive_command_fails_the_verification_and_says_why() {
    // archive_command points at a folder the server cannot write (a typo'd
    // path, a wrong owner): every attempt fails, nothing reaches the archive.
    let locked = tempfile::Builder::new()
        .prefix("walwarden-locked-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(locked.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let w = locked.path().display();
    let p = primary(Some(format!(
        "archive_command = 'test ! -f {w}/%f.gz && gzip -c -9 %p > {w}/%f.gz.part \
         && gzip -t {w}/%f.gz.part && sync {w}/%f.gz.part && mv {w}/%f.gz.part {w}/%f.gz'\n"
    )));
    let before = p.backup.archived_segments();
    let root = p.backup.root.clone();
    let (output, switched) =
        with_switches(&p.server, || finish(spawn_verify(&root, p.home.path())));
    let report = report(&output, 1);

    assert_eq!(report["passed"], false, "{report:#}");
    assert!(
        switched.len() >= 3,
        "the test switched segments: {switched:?}"
    );
    assert_eq!(arrivals(&report).len(), 0, "{report:#}");
    assert_eq!(
        item(&report, 0).0,
        "pass",
        "the base backup is fine: {report:#}"
    );
    assert_eq!(
        item(&report, 1),
        ("fail", "0 new, at least 2 needed"),
        "{report:#}"
    );
    let (state, detail) = item(&report, 2);
    assert_eq!(state, "fail", "{report:#}");
    assert!(
        detail.starts_with("nothing arrived for ") && detail.contains("limit 6s"),
        "item 3 says the archive stayed silent: {detail}"
    );
    let (state, detail) = item(&report, 3);
    assert_eq!(
        (state, detail),
        ("fail", "no new segment yet"),
        "{report:#}"
    );

    // The failure is real: PostgreSQL could not archive, and the folder is unchanged.
    let stats = p
        .server
        .psql("select failed_count || ' ' || coalesce(last_failed_wal, '') from pg_stat_archiver");
    let failed: u64 = stats.split(' ').next().unwrap().parse().unwrap();
    assert!(failed > 0, "pg_stat_archiver counts failures: {stats}");
    assert_eq!(p.backup.archived_segments(), before);
    let log = fs::read_to_string(&p.backup.cluster.log_file).unwrap();
    assert!(
        log.contains("archive command failed"),
        "the server log says so too:\n{}",
        p.backup.cluster.log_tail(20)
    );
}

#[test]
fn a_segment_from_another_cluster_fails_on_the_system_identifier() {
    let p = primary(None);
    let root = p.backup.root.clone();
    let wal_dir = p.backup.wal_dir();
    // Beyond anything the real server archives during the window: a "new" segment.
    let last = RawSegmentName::parse(&p.backup.last_archived)
        .unwrap()
        .resolve(16 << 20)
        .unwrap();
    let foreign = Cluster::new(FOREIGN_SYSTEM, 16 << 20);
    let foreign_id = foreign.id(1, last.segment.0 + 0x80);
    let foreign_name = format!("{}.gz", foreign_id.file_name(16 << 20));

    let (output, _switched) = with_switches(&p.server, || {
        let child = spawn_verify(&root, p.home.path());
        // Mid-window, someone's archive_command with the wrong path ships here.
        thread::sleep(Duration::from_secs(5));
        foreign.archive_segment(&wal_dir, foreign_id, None).unwrap();
        finish(child)
    });
    let report = report(&output, 1);

    assert_eq!(report["passed"], false, "{report:#}");
    assert_eq!(item(&report, 0).0, "pass", "{report:#}");
    assert_eq!(
        item(&report, 1).0,
        "pass",
        "segments kept arriving: {report:#}"
    );
    assert_eq!(item(&report, 2).0, "pass", "{report:#}");
    let (state, detail) = item(&report, 3);
    assert_eq!(state, "fail", "{report:#}");
    let ours = p.backup.system_identifier.to_string();
    assert!(
        detail.contains(&foreign_name)
            && detail.contains("another database system")
            && detail.contains(&format!("system identifier {FOREIGN_SYSTEM}"))
            && detail.contains(&ours),
        "item 4 names the foreign segment and both system identifiers: {detail}"
    );
    let arrivals = arrivals(&report);
    let bad: Vec<&Value> = arrivals
        .iter()
        .filter(|a| a["failure"] != Value::Null)
        .collect();
    assert_eq!(bad.len(), 1, "only the foreign segment is bad: {report:#}");
    assert_eq!(bad[0]["name"], foreign_name.as_str());
    assert!(
        arrivals.len() >= 3,
        "the real segments arrived too: {report:#}"
    );
}

/// The base check reads the whole base.tar.gz, which takes minutes on a real
/// server: segments that arrive meanwhile must be judged against its system
/// identifier once it is known, not failed for want of it.
#[test]
fn segments_checked_before_the_base_backup_is_read_are_judged_once_it_is() {
    let backup = make_real_backup(CLIENT);
    let mut client = catalog::scan_client(&backup.root, CLIENT, &ScanOptions::default()).unwrap();
    // The archive's last segment plays a segment that arrives during the window.
    let real = format!("{}.gz", backup.last_archived);
    client.wal.segments.retain(|s| s.file_name() != real);
    let settings = VerifySettings {
        window: Duration::from_secs(60),
        expect_interval: Duration::from_secs(60),
        slack: Duration::from_secs(30),
        min_segments: 2,
    };
    let start = SystemTime::now();
    let mut verification = Verification::new(&client, settings, start);
    assert!(verification.wants(&real));

    let foreign = Cluster::new(FOREIGN_SYSTEM, 16 << 20);
    let foreign_id = foreign.id(1, 0x1000);
    let foreign_path = foreign
        .archive_segment(&backup.wal_dir(), foreign_id, None)
        .unwrap();
    verification.segment_checked(
        start + Duration::from_secs(5),
        check_segment(&backup.wal_dir().join(&real)),
    );
    verification.segment_checked(
        start + Duration::from_secs(10),
        check_segment(&foreign_path),
    );
    assert_eq!(verification.arrivals.len(), 2);

    verification.base_checked(check_base_backup(&backup.base_dir(), &mut |_| {}));
    let base = verification.base.as_ref().unwrap();
    assert_eq!(base.failures, Vec::<String>::new());
    assert_eq!(base.system_identifier, Some(backup.system_identifier));
    assert_eq!(
        verification.arrivals[0].failure, None,
        "the real segment is from this database system"
    );
    let failure = verification.arrivals[1]
        .failure
        .as_deref()
        .unwrap_or_default();
    assert!(
        failure.contains("another database system") && failure.contains("12345"),
        "the foreign one is not: {failure:?}"
    );
    let items = verification.items(start + Duration::from_secs(61));
    assert_eq!(items[0].state, ItemState::Pass);
    assert_eq!(items[3].state, ItemState::Fail);
    let name = foreign_path.file_name().unwrap().to_string_lossy();
    assert!(
        items[3].detail.contains(failure) && items[3].detail.contains(&*name),
        "item 4 names the foreign segment and why: {}",
        items[3].detail
    );
}
