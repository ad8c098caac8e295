//! `walwarden wal-get` as PostgreSQL runs it, on a synthetic archive and a
//! stand-in data directory (no server): exit statuses, the one stderr line
//! of a refusal and none for a normal miss, the detached prefetcher (one,
//! ahead of requests) and that it ends, with its spool, when recovery ends
//! and when the "postmaster" dies.

mod walget_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use walget_support::{marked_processes, wait_until};
use walwarden::archive::continuity::TimelineSpan;
use walwarden::archive::wal::{Lsn, Timeline};
use walwarden::demo::{Cluster, gzip};
use walwarden::ops::walget::plan::{PlanOptions, PlanParts, WalGetPlan, plan_path};
use walwarden::ops::walget::progress::{self, RequestOutcome};

const SEG: u32 = 1 << 20;
const SYSID: u64 = 7712094032559808441;

struct Setup {
    _tmp: tempfile::TempDir,
    plan: WalGetPlan,
    plan_path: PathBuf,
    cluster: Cluster,
}

/// Segments 2..=last on timeline 1, 1 MiB each, a data dir in recovery.
fn setup(last: u64) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("main");
    fs::create_dir_all(data.join("pg_wal")).unwrap();
    fs::write(data.join("recovery.signal"), b"").unwrap();
    let wal = tmp.path().join("client1/wal");
    fs::create_dir_all(&wal).unwrap();
    let cluster = Cluster::new(SYSID, SEG);
    for segno in 2..=last {
        cluster
            .archive_segment(&wal, cluster.id(1, segno), None)
            .unwrap();
    }
    let plan = WalGetPlan::new(
        PlanParts {
            archive_dir: wal,
            data_dir: data.clone(),
            system_identifier: SYSID,
            segment_size: SEG,
            line: vec![TimelineSpan {
                timeline: Timeline(1),
                begin: Lsn(0),
                end: None,
            }],
            first_segment: Some(cluster.id(1, 2).file_name(SEG)),
            last_segment: Some(cluster.id(1, last).file_name(SEG)),
            target_segment: None,
        },
        &PlanOptions {
            prefetch_depth: 4,
            idle_timeout: Duration::from_secs(30),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let plan_path = plan_path(&data);
    plan.write(&plan_path, None).unwrap();
    Setup {
        _tmp: tmp,
        plan,
        plan_path,
        cluster,
    }
}

/// `walwarden wal-get --plan PLAN FILE pg_wal/RECOVERYXLOG` from the data directory.
fn ask(setup: &Setup, file: &str) -> Output {
    let _ = fs::remove_file(setup.plan.data_dir.join("pg_wal/RECOVERYXLOG"));
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .arg("wal-get")
        .arg("--plan")
        .arg(&setup.plan_path)
        .arg(file)
        .arg("pg_wal/RECOVERYXLOG")
        .current_dir(&setup.plan.data_dir)
        // Would break a run that read the configuration: wal-get must not.
        .env("WALWARDEN_CONFIG", "/nonexistent/walwarden.toml")
        .output()
        .unwrap()
}

fn name(setup: &Setup, segno: u64) -> String {
    setup.cluster.id(1, segno).file_name(SEG)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn prefetchers(setup: &Setup) -> Vec<(u32, String)> {
    marked_processes(&setup.plan_path)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--prefetch"))
        .collect()
}

#[test]
fn requests_are_served_ahead_by_one_prefetcher_that_leaves_nothing_when_recovery_ends() {
    let s = setup(40);
    let first = ask(&s, &name(&s, 2));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(stderr(&first), "");
    assert_eq!(
        fs::metadata(s.plan.data_dir.join("pg_wal/RECOVERYXLOG"))
            .unwrap()
            .len(),
        SEG as u64
    );
    assert!(
        wait_until(Duration::from_secs(10), || prefetchers(&s).len() == 1),
        "one prefetcher runs: {:?}",
        marked_processes(&s.plan_path)
    );
    // Let it get ahead, then replay the line: most answers come from the spool.
    std::thread::sleep(Duration::from_millis(500));
    for segno in 3..=40 {
        let out = ask(&s, &name(&s, segno));
        assert_eq!(out.status.code(), Some(0), "{segno}: {}", stderr(&out));
    }
    assert_eq!(prefetchers(&s).len(), 1, "still exactly one");
    let records = progress::read(&s.plan.request_log).unwrap();
    let spooled = records
        .iter()
        .filter(|r| r.outcome == RequestOutcome::Spool)
        .count();
    assert!(
        spooled >= 20,
        "{spooled} of 39 from the spool: {records:#?}"
    );
    // The spool never held more than the depth ahead.
    assert!(
        fs::read_dir(&s.plan.spool_dir).unwrap().count() <= 4 + 2,
        "bounded"
    );

    // What a person (or a wizard, through progress::ProgressFollower) sees.
    let status = Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(["wal-get", "--status", "--plan"])
        .arg(&s.plan_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.starts_with(&format!("segment 39 of 39 ({})", name(&s, 40))),
        "{text}"
    );

    // The end of the archive: silent, exit 1.
    let end = ask(&s, &name(&s, 41));
    assert_eq!(end.status.code(), Some(1));
    assert_eq!(
        stderr(&end),
        "",
        "the normal end-of-archive probe is silent"
    );

    // Recovery ends (PostgreSQL removes recovery.signal when it promotes).
    fs::remove_file(s.plan.data_dir.join("recovery.signal")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || prefetchers(&s).is_empty()
            && !s.plan.spool_dir.exists()),
        "the prefetcher stops and removes its spool: {:?}",
        prefetchers(&s)
    );
    // A probe after recovery starts nothing and makes no spool.
    let probe = ask(&s, "00000002.history");
    assert_eq!(probe.status.code(), Some(1));
    assert_eq!(stderr(&probe), "");
    assert!(!s.plan.spool_dir.exists());
    let stats = walwarden::ops::walget::finish::finish(&s.plan_path).unwrap();
    assert_eq!(stats.segments, 39);
    assert_eq!(stats.prefetcher_stops, vec!["recovery ended".to_owned()]);
    assert!(!s.plan_path.exists() && !s.plan.request_log.exists());
}

#[test]
fn refusals_are_one_named_line_and_gaps_are_told_from_the_end() {
    let s = setup(12);
    // Stop prefetching from being part of this test: no recovery.signal.
    fs::remove_file(s.plan.data_dir.join("recovery.signal")).unwrap();
    let wal = &s.plan.archive_dir;
    let foreign = Cluster::new(42, SEG);
    let bad = name(&s, 5);
    fs::write(
        wal.join(format!("{bad}.gz")),
        gzip(&foreign.segment_bytes(foreign.id(1, 5))).unwrap(),
    )
    .unwrap();
    let out = ask(&s, &bad);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "walwarden wal-get: refused {bad} (foreign-segment): system identifier 42"
        )),
        "{err}"
    );
    assert!(!s.plan.data_dir.join("pg_wal/RECOVERYXLOG").exists());

    let cut = name(&s, 6);
    let path = wal.join(format!("{cut}.gz"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = stderr(&ask(&s, &cut));
    assert!(
        err.contains(&format!("refused {cut} (corrupt-segment)")),
        "{err}"
    );

    let gap = name(&s, 7);
    fs::remove_file(wal.join(format!("{gap}.gz"))).unwrap();
    let out = ask(&s, &gap);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("missing {gap} (wal-gap)")),
        "{}",
        stderr(&out)
    );

    let plan_text = fs::read_to_string(&s.plan_path).unwrap();
    fs::write(&s.plan_path, "{").unwrap();
    let out = ask(&s, &name(&s, 8));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("failed {} (restore-command-failed)", name(&s, 8))),
        "{}",
        stderr(&out)
    );
    fs::write(&s.plan_path, plan_text).unwrap();
    assert_eq!(ask(&s, &name(&s, 8)).status.code(), Some(0));
}

#[test]
fn the_prefetcher_ends_with_its_server_however_it_dies() {
    let s = setup(30);
    let mut postmaster = Command::new("sleep").arg("120").spawn().unwrap();
    fs::write(
        s.plan.data_dir.join("postmaster.pid"),
        format!("{}\n{}\n", postmaster.id(), s.plan.data_dir.display()),
    )
    .unwrap();
    assert_eq!(ask(&s, &name(&s, 2)).status.code(), Some(0));
    assert!(wait_until(Duration::from_secs(10), || prefetchers(&s)
        .len()
        == 1));
    assert!(wait_until(Duration::from_secs(10), || s
        .plan
        .spool_dir
        .join(name(&s, 5))
        .exists()));
    // kill -9: no pid file removed, no signal file removed; only the process is gone.
    postmaster.kill().unwrap();
    postmaster.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || prefetchers(&s).is_empty()
            && !s.plan.spool_dir.exists()),
        "{:?}",
        prefetchers(&s)
    );
    let stops = progress::summarize(&progress::read(&s.plan.request_log).unwrap()).prefetcher_stops;
    assert_eq!(stops, vec!["the server is gone".to_owned()]);
    assert!(Path::new(&s.plan.data_dir).join("recovery.signal").exists());
}

/// A restore that ends while recovery still runs (stopped, rolled back) calls
/// `finish`: the prefetcher, found by its pid and plan path, is asked to
/// stop and cleans up.
#[test]
fn finish_stops_a_prefetcher_that_outlives_its_restore() {
    let s = setup(30);
    assert_eq!(ask(&s, &name(&s, 2)).status.code(), Some(0));
    assert!(wait_until(Duration::from_secs(10), || prefetchers(&s)
        .len()
        == 1));
    let pid = prefetchers(&s)[0].0;
    let stats = walwarden::ops::walget::finish::finish(&s.plan_path).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !walget_support::is_alive(pid)),
        "the prefetcher ended"
    );
    assert!(!s.plan.spool_dir.exists());
    assert_eq!(stats.prefetcher_stops, vec!["asked to stop".to_owned()]);
    assert_eq!(stats.segments, 1);
}

/// `finish` runs as root on names the PostgreSQL user can change. Here the
/// spool is swapped for a link to the client's `wal/` folder and the plan
/// file is rewritten to name that folder as the spool and a base backup as
/// the request log, while a prefetcher runs: the archive keeps every file,
/// the prefetcher is stopped all the same, and what is really the
/// restore's (the request log, the plan) is removed. A link planted into
/// the protected backup root is refused by the guard and left; one pointing
/// elsewhere loses its name and nothing else.
#[test]
fn finish_removes_nothing_a_planted_link_or_a_rewritten_plan_points_at() {
    use walwarden::ops::walget::finish::finish;
    let s = setup(30);
    let root = s._tmp.path().to_path_buf();
    let client = root.join("client1");
    let base = client.join("base/20240101T000000/base.tar.gz");
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    fs::write(&base, b"base backup").unwrap();
    let archived: Vec<PathBuf> = fs::read_dir(&s.plan.archive_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archived.len(), 29);
    let intact = || {
        for file in &archived {
            assert!(file.exists(), "{} was removed", file.display());
        }
        assert_eq!(fs::read(&base).unwrap(), b"base backup");
    };
    let plant_link = || {
        std::os::unix::fs::symlink(&s.plan.archive_dir, &s.plan.spool_dir).unwrap();
        let mut rewritten = s.plan.clone();
        rewritten.spool_dir = s.plan.archive_dir.clone();
        rewritten.request_log = base.clone();
        fs::write(&s.plan_path, serde_json::to_vec(&rewritten).unwrap()).unwrap();
    };

    assert_eq!(ask(&s, &name(&s, 2)).status.code(), Some(0));
    assert!(wait_until(Duration::from_secs(10), || prefetchers(&s)
        .len()
        == 1));
    let pid = prefetchers(&s)[0].0;
    fs::rename(&s.plan.spool_dir, root.join("old-spool")).unwrap();
    plant_link();
    // The prefetcher, asked to stop, may unlink the link itself first.
    let stats = finish(&s.plan_path);
    assert!(
        wait_until(Duration::from_secs(5), || !walget_support::is_alive(pid)),
        "the prefetcher ended ({stats:?})"
    );
    intact();
    assert!(!s.plan.request_log.exists() && !s.plan_path.exists());

    // The client's folder stands for the backup root the restore protects.
    walwarden::store::guard::protect(&client);
    let _ = fs::remove_file(&s.plan.spool_dir);
    plant_link();
    let refused = finish(&s.plan_path).unwrap_err().to_string();
    assert!(
        refused.contains("the wal-get spool") && refused.contains("inside the backup root"),
        "{refused}"
    );
    intact();
    assert!(
        fs::symlink_metadata(&s.plan.spool_dir)
            .unwrap()
            .is_symlink()
    );
    assert!(!s.plan_path.exists());

    // Outside the backup root the link loses its name and nothing else.
    let data = root.join("other/main");
    let folder = root.join("elsewhere");
    fs::create_dir_all(data.parent().unwrap()).unwrap();
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("keep"), b"kept").unwrap();
    let spool = walwarden::ops::walget::plan::spool_path(&data);
    std::os::unix::fs::symlink(&folder, &spool).unwrap();
    let plan = plan_path(&data);
    fs::write(&plan, b"{}").unwrap();
    finish(&plan).unwrap();
    assert!(fs::symlink_metadata(&spool).is_err());
    assert_eq!(fs::read(folder.join("keep")).unwrap(), b"kept");
    assert!(!plan.exists());
}
