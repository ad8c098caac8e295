//! Hostile and careless input (issue 11), each test named after what broke,
//! with the real binary and real fifos, devices, links and users on temp
//! folders: the archive is never written, moved or deleted whatever the
//! flags; nothing hangs on a file a client's user planted; names are data,
//! never terminal commands; not being able to read is unknown, not damage.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use walwarden::demo::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_walwarden");
const SEG: u32 = 16 << 20;
const SYSTEM: u64 = 7_500_000_000_000_000_011;
/// A hang detector, not a speed claim: each of these runs takes seconds.
const HANG: Duration = Duration::from_secs(120);

/// The binary with a private HOME and caches, no inherited root or config.
fn walwarden(home: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("WALWARDEN_ROOT")
        .env_remove("WALWARDEN_CONFIG")
        .env_remove("WALWARDEN_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs `command`, killing it (and failing the test) when it has not
/// returned within `limit`.
fn run_within(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start walwarden");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for walwarden"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("hung: {command:?} did not return within {limit:?}");
        }
    }
}

fn run(command: &mut Command) -> Output {
    run_within(command, HANG)
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(out)))
}

/// A client with a base backup at 0x10 and segments 0x10..=last, one a
/// minute up to now; `name` may be any bytes.
fn client(root: &Path, name: &OsStr, last: u64) -> PathBuf {
    let cluster = Cluster::new(SYSTEM, SEG);
    let dir = root.join(name);
    let now = SystemTime::now();
    let ago = |m: u64| now - Duration::from_secs(m * 60);
    cluster
        .write_base_backup(
            &dir,
            cluster.id(1, 0x10),
            cluster.id(1, 0x11),
            ago(last - 0x10 + 2),
        )
        .unwrap();
    for segno in 0x10..=last {
        cluster
            .archive_segment(
                &dir.join("wal"),
                cluster.id(1, segno),
                Some(ago(last - segno)),
            )
            .unwrap();
    }
    dir
}

fn named(name: &str) -> &OsStr {
    OsStr::new(name)
}

/// Every path under `dir` with its kind, size and mtime: what "nothing was
/// written, moved or deleted" compares.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (String, u64, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = format!("{:?}", meta.file_type());
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        let mtime = (!meta.is_dir()).then(|| meta.modified().unwrap());
        out.insert(path, (kind, meta.len(), mtime));
    }
    out
}

/// What changed under `dir` since `before`, outside the home folder and the
/// restore journal (a refused restore may record its refusal there).
fn changed_since(
    dir: &Path,
    before: &BTreeMap<PathBuf, (String, u64, Option<SystemTime>)>,
) -> Vec<PathBuf> {
    listing(dir)
        .into_iter()
        .filter(|(path, fact)| {
            !path.starts_with(dir.join("home"))
                && !path.to_string_lossy().ends_with(".walwarden-restore.jsonl")
                && before.get(path) != Some(fact)
        })
        .map(|(path, _)| path)
        .collect()
}

/// A PostgreSQL "binaries" folder whose postgres only answers --version,
/// so the restore's preflight runs without a real PostgreSQL.
fn fake_pg_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-pg-bin");
    fs::create_dir_all(&bin).unwrap();
    let postgres = bin.join("postgres");
    fs::write(&postgres, "#!/bin/sh\necho 'postgres (PostgreSQL) 15.0'\n").unwrap();
    fs::set_permissions(&postgres, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn stderr_line(out: &Output, prefix: &str) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line\n{}", show(out)))
        .to_owned()
}

/// `walwarden restore acme --yes` with `extra`, which preflight must refuse
/// (exit 3): its `error:` line.
fn refused_restore(
    home: &Path,
    root: &Path,
    data_dir: &Path,
    pg_bin: &Path,
    extra: &[&str],
) -> String {
    let out = run(walwarden(home)
        .args(["restore", "acme", "--yes", "--root"])
        .arg(root)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--pg-bin")
        .arg(pg_bin)
        .args(extra));
    assert_eq!(out.status.code(), Some(3), "{extra:?}: {}", show(&out));
    stderr_line(&out, "error: ")
}

/// Probe 1: with `--data-dir /x/D --root /x/D/root --purge` the wizard
/// deleted the whole archive (and without --purge moved it aside).
#[test]
fn a_data_dir_holding_the_root_is_refused_with_nothing_deleted_or_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("x/D");
    let root = data.join("root");
    client(&root, named("acme"), 0x12);
    fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    fs::write(data.join("precious"), "old data").unwrap();
    let pg_bin = fake_pg_bin(tmp.path());
    let home = tmp.path().join("home");
    let before = listing(tmp.path().join("x").as_path());
    for extra in [
        &["--purge", "--confirm-purge", "acme"][..],
        &[][..],
        &["--dry-run", "--purge"][..],
    ] {
        let error = refused_restore(&home, &root, &data, &pg_bin, extra);
        assert!(error.contains("contains the backup root"), "{error}");
        assert_eq!(
            listing(tmp.path().join("x").as_path()),
            before,
            "nothing deleted, moved or written (no journal, no aside) with {extra:?}"
        );
    }
}

/// A refused restore still wrote its journal next to the data directory,
/// even when that lay inside the root.
#[test]
fn a_refused_restore_writes_no_journal_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let acme = client(&root, named("acme"), 0x12);
    let pg_bin = fake_pg_bin(tmp.path());
    let before = listing(&root);
    for data in [acme.join("restored"), acme.join("wal"), root.clone()] {
        let error = refused_restore(
            &tmp.path().join("home"),
            &root,
            &data,
            &pg_bin,
            &["--purge", "--confirm-purge", "acme"],
        );
        assert!(error.contains("backup root"), "{error}");
        assert_eq!(
            listing(&root),
            before,
            "the archive is untouched ({data:?})"
        );
    }
}

/// Probe 3: `--textfile ROOT/c1/wal/000000010000000000000003.gz` replaced the
/// segment with metrics text. Also the debug log, a dump, and the caches.
#[test]
fn textfile_log_file_dump_and_caches_never_land_in_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let c1 = client(&root, named("c1"), 0x12);
    let home = tmp.path().join("home");
    let segment = c1.join("wal/000000010000000000000011.gz");
    let before = listing(&root);

    for target in [
        segment.clone(),
        root.clone(),
        c1.join("metrics.prom"),
        tmp.path().to_owned(),
    ] {
        let out = run(walwarden(&home)
            .args(["check", "--root"])
            .arg(&root)
            .arg("--textfile")
            .arg(&target));
        assert_eq!(out.status.code(), Some(3), "{}", show(&out));
        assert!(
            stderr_line(&out, "error: ").contains("--textfile"),
            "{}",
            show(&out)
        );
    }
    // Through a link to the root, too.
    std::os::unix::fs::symlink(&root, tmp.path().join("alias")).unwrap();
    let out = run(walwarden(&home)
        .args(["check", "--root"])
        .arg(&root)
        .arg("--textfile")
        .arg(tmp.path().join("alias/c1/wal/x.prom")));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));

    let out = run(walwarden(&home)
        .args(["check", "--root"])
        .arg(&root)
        .arg("--log-file")
        .arg(c1.join("debug.log")));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stderr_line(&out, "error: ").contains("--log-file"));

    let out = run(walwarden(&home)
        .args([
            "migrate",
            "--from",
            "host=/nonexistent",
            "--to",
            "host=/nowhere",
        ])
        .arg("--root")
        .arg(&root)
        .arg("--dump")
        .arg(c1.join("dump.sql.gz")));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr_line(&out, "error: ").contains("--dump"),
        "{}",
        show(&out)
    );

    // The caches (quick-check verdicts, base facts) under a cache folder inside the root.
    let out = run(walwarden(&home)
        .env("XDG_CACHE_HOME", c1.join("cache"))
        .args(["check", "--root"])
        .arg(&root));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stderr_line(&out, "error: ").contains("backup root"),
        "{}",
        show(&out)
    );
    assert_eq!(listing(&root), before, "nothing written under the root");
    // Outside the root the textfile is written as before.
    let prom = tmp.path().join("walwarden.prom");
    let out = run(walwarden(&home)
        .args(["check", "--root"])
        .arg(&root)
        .arg("--textfile")
        .arg(&prom));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        fs::read_to_string(&prom)
            .unwrap()
            .contains("walwarden_client_status{client=\"c1\"} 0")
    );
}

/// Probe 5: `drill --scratch` inside the archive created and removed a
/// folder there before refusing.
#[test]
fn drill_scratch_inside_the_archive_is_refused_before_anything_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let acme = client(&root, named("acme"), 0x12);
    let before = listing(&root);
    for scratch in [acme.join("wal"), root.clone(), tmp.path().to_owned()] {
        let out = run(walwarden(&tmp.path().join("home"))
            .args(["drill", "acme", "--root"])
            .arg(&root)
            .arg("--scratch")
            .arg(&scratch));
        assert_eq!(out.status.code(), Some(3), "{}", show(&out));
        assert!(
            stderr_line(&out, "error: ").contains("--scratch"),
            "{}",
            show(&out)
        );
        assert_eq!(listing(&root), before, "nothing made under {scratch:?}");
    }
}

/// A gzip member of 64 MiB of zeros, repeated: `members` × 64 MiB inflated
/// from about `members` × 64 KiB.
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).unwrap();
    }
    let member = encoder.finish().unwrap();
    member.repeat(members)
}

fn statuses(doc: &serde_json::Value) -> BTreeMap<String, (String, Vec<String>)> {
    doc["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let codes = c["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["code"].as_str().unwrap().to_owned())
                .collect();
            (
                c["name"].as_str().unwrap().to_owned(),
                (c["status"].as_str().unwrap().to_owned(), codes),
            )
        })
        .collect()
}

/// Probes 2 and 8, the watchdog: a named pipe hung `check` for every
/// client (and the dashboard at "scanning…"), a device named like a segment
/// hung `--deep`, a gzip bomb was inflated to its 43 GB and a sparse 20 GB
/// file read in full. One client holding all of them now costs that client
/// problems, never the others' verdicts nor the run its end.
#[test]
fn a_fifo_a_device_a_bomb_and_a_sparse_file_cost_one_client_never_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("c1"), 0x14);
    client(&root, named("c2"), 0x18);
    let home = tmp.path().join("home");
    let control = json(&run(walwarden(&home)
        .args(["check", "--json", "--root"])
        .arg(&root)));
    let control_deep = json(&run(walwarden(&tmp.path().join("home-control"))
        .args(["check", "--deep", "--json", "--root"])
        .arg(&root)));

    let evil = client(&root, named("evil"), 0x12);
    let wal = evil.join("wal");
    let fifo = |path: PathBuf| {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
    };
    fifo(wal.join("00000002.history"));
    fifo(wal.join("000000010000000000000011.00000028.backup"));
    fifo(wal.join("000000010000000000000013.gz"));
    fifo(evil.join("base/backup_manifest"));
    let device = wal.join("000000010000000000000014");
    if nix::sys::stat::mknod(
        &device,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 3),
    )
    .is_err()
    {
        fifo(device);
    }
    // A bomb small enough to be a gzip'ed segment (inflating to 12.5 GiB),
    // and one too large to be one (judged from its size).
    fs::write(wal.join("000000010000000000000015.gz"), gzip_bomb(200)).unwrap();
    fs::write(wal.join("000000010000000000000016.gz"), gzip_bomb(640)).unwrap();
    for name in ["000000010000000000000017", "000000010000000000000018.gz"] {
        fs::File::create(wal.join(name))
            .unwrap()
            .set_len(20 << 30)
            .unwrap();
    }

    for deep in [false, true] {
        let home = tmp.path().join(format!("home-{deep}"));
        let mut command = walwarden(&home);
        command.args(["check", "--json", "--root"]).arg(&root);
        if deep {
            command.arg("--deep");
        }
        let out = run(&mut command);
        let doc = json(&out);
        let found = statuses(&doc);
        let expected = statuses(if deep { &control_deep } else { &control });
        for name in ["c1", "c2"] {
            assert_eq!(found[name], expected[name], "{name} intact (deep: {deep})");
        }
        let (status, codes) = &found["evil"];
        assert_ne!(status, "ok", "{doc:#}");
        assert!(codes.iter().any(|c| c == "unexpected_file"), "{codes:?}");
        let messages: Vec<&str> = doc["clients"][2]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["message"].as_str().unwrap())
            .collect();
        for kind in ["fifo", "character device"] {
            assert!(
                messages.iter().any(|m| m.contains(kind)),
                "{kind}: {messages:#?}"
            );
        }
        if deep {
            assert!(
                messages
                    .iter()
                    .any(|m| m.contains("000000010000000000000015.gz")
                        && m.contains("inflates past")),
                "the bomb stops one byte past the segment: {messages:#?}"
            );
            assert!(
                messages
                    .iter()
                    .any(|m| m.contains("000000010000000000000016.gz") && m.contains("larger than")),
                "{messages:#?}"
            );
        }
    }

    // The dashboard's core: the scan, the quick check and a live event on the pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let scanned_root = root.clone();
    std::thread::spawn(move || {
        use walwarden::archive::catalog::{self, ScanOptions};
        let catalog = catalog::scan(&scanned_root, &ScanOptions::default()).unwrap();
        let inputs: Vec<_> = catalog
            .clients
            .iter()
            .map(walwarden::checks::quick::QuickInput::borrowed)
            .collect();
        let checked = walwarden::checks::jobs::quick_check(&inputs);
        let mut observer = walwarden::archive::catalog::Observer::new(&scanned_root);
        let observed = observer.observe(&walwarden::archive::watch::WalChange::Arrived {
            client: "evil".into(),
            name: "00000002.history".into(),
            seen_at: SystemTime::now(),
        });
        let _ = tx.send((catalog.clients.len(), checked.findings.len(), observed));
    });
    let (clients, checked, observed) = rx
        .recv_timeout(HANG)
        .expect("hung: the scan, the quick check or the observer did not return");
    assert_eq!((clients, checked), (3, 3));
    assert!(
        matches!(
            observed,
            walwarden::archive::catalog::Observation::RescanClient(_)
        ),
        "a pipe is left to the scan's rules: {observed:?}"
    );
}

/// Probe 6: a client folder that is a symlink to `/` listed `/`.
#[test]
fn a_client_linked_to_slash_is_reported_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("c1"), 0x12);
    std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
    let out = run(walwarden(&tmp.path().join("home"))
        .args(["check", "--json", "--root"])
        .arg(&root));
    let doc = json(&out);
    let found = statuses(&doc);
    assert_eq!(found["c1"].0, "ok");
    assert_eq!(
        found["evil"],
        ("unknown".to_owned(), vec!["unreadable".to_owned()]),
        "{doc:#}"
    );
    let evil = &doc["clients"][1];
    assert_eq!(evil["wal"]["segments"], 0);
    let message = evil["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("never followed") && message.contains("to /"),
        "{message}"
    );
    assert_eq!(out.status.code(), Some(3));
}

/// Probe 7: "restorable to" (and the Prometheus metric) ignored a corrupt
/// segment, while a drill stopped at it.
#[test]
fn the_window_and_its_metric_stop_at_the_first_corrupt_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let dir = client(&root, named("acme"), 0x18);
    let victim = dir.join("wal/000000010000000000000014.gz");
    let bytes = fs::read(&victim).unwrap();
    let mtime = fs::metadata(&victim).unwrap().modified().unwrap();
    fs::write(&victim, &bytes[..bytes.len() - 3]).unwrap();
    walwarden::demo::set_mtime(&victim, mtime).unwrap();
    let before = fs::metadata(dir.join("wal/000000010000000000000013.gz"))
        .unwrap()
        .modified()
        .unwrap();
    let expected = humantime::format_rfc3339_seconds(before).to_string();
    for deep in [false, true] {
        let home = tmp.path().join(format!("home-{deep}"));
        let mut command = walwarden(&home);
        command.args(["check", "--json", "--root"]).arg(&root);
        if deep {
            command.arg("--deep");
        }
        let doc = json(&run(&mut command));
        let acme = &doc["clients"][0];
        assert_eq!(
            acme["restorable_to"].as_str(),
            Some(expected.as_str()),
            "{acme:#}"
        );
        assert_eq!(
            acme["wal"]["restorable_through"].as_str(),
            Some("000000010000000000000013")
        );
        let mut command = walwarden(&home);
        command
            .args(["check", "--format", "prometheus", "--root"])
            .arg(&root);
        if deep {
            command.arg("--deep");
        }
        let text = String::from_utf8(run(&mut command).stdout).unwrap();
        let metric = text
            .lines()
            .find(|l| l.starts_with("walwarden_restorable_to_timestamp_seconds{client=\"acme\"}"))
            .unwrap_or_else(|| panic!("{text}"));
        let seconds: f64 = metric.rsplit(' ').next().unwrap().parse().unwrap();
        let want = before
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((seconds - want).abs() < 1.0, "{metric} vs {want}");
    }
}

/// Probe 9: ESC sequences in client names were printed raw; non-UTF-8 names
/// became duplicate Prometheus series and could not be addressed.
#[test]
fn names_are_printed_escaped_kept_unique_in_metrics_and_addressable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("evil\x1b]0;owned\x07\x1b[2J"), 0x12);
    client(&root, OsStr::from_bytes(b"bad\xff"), 0x12);
    client(&root, OsStr::from_bytes(b"bad\xfe"), 0x12);
    let home = tmp.path().join("home");
    let text = run(walwarden(&home).args(["check", "-v", "--root"]).arg(&root));
    for stream in [&text.stdout, &text.stderr] {
        assert!(
            !stream.iter().any(|b| *b == 0x1b || *b == 0x07),
            "no terminal command reaches the terminal:\n{}",
            show(&text)
        );
    }
    let stdout = String::from_utf8(text.stdout.clone()).expect("UTF-8");
    for shown in ["evil\\x1b]0;owned\\x07\\x1b[2J", "bad\\xff", "bad\\xfe"] {
        assert!(stdout.contains(shown), "{shown}:\n{stdout}");
    }

    let out = run(walwarden(&home)
        .args(["check", "--format", "prometheus", "--root"])
        .arg(&root));
    let metrics = String::from_utf8(out.stdout).expect("valid UTF-8 for node_exporter");
    let mut series = BTreeSet::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (name, _) = line.rsplit_once(' ').unwrap();
        assert!(series.insert(name.to_owned()), "duplicate series {name}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    let statuses: Vec<&String> = series
        .iter()
        .filter(|s| s.starts_with("walwarden_client_status"))
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:#?}");

    // Each is addressed by the name it is shown with.
    for shown in ["bad\\xff", "bad\\xfe", "evil\\x1b]0;owned\\x07\\x1b[2J"] {
        let doc = json(&run(walwarden(&home)
            .args(["check", "--json", "--root"])
            .arg(&root)
            .arg(shown)));
        let names: Vec<&str> = doc["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec![shown]);
        assert_eq!(doc["clients"][0]["status"], "ok", "{doc:#}");
    }
    // Addressed by a restore too, which refuses what PostgreSQL could not name.
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let out = run(walwarden(&home)
        .args(["restore", "bad\\xff", "--dry-run", "--root"])
        .arg(&root)
        .arg("--data-dir")
        .arg(&data)
        .arg("--pg-bin")
        .arg(fake_pg_bin(tmp.path())));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stderr_line(&out, "error: ").contains("bad\\xff/wal is not UTF-8"),
        "{}",
        show(&out)
    );
}

/// Rewrites a gzip'ed tarball with one more entry whose raw name is `name`.
fn append_raw_entry(tarball: &Path, name: &[u8]) {
    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        fs::File::open(tarball).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.push((header, data));
    }
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (header, data) in &entries {
        builder.append(header, &data[..]).unwrap();
    }
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &b"x"[..]).unwrap();
    fs::write(tarball, builder.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// Probe 9 too: ESC sequences in tar header names reached the terminal.
#[test]
fn a_tar_entry_name_with_escapes_is_refused_and_shown_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let acme = client(&root, named("acme"), 0x12);
    append_raw_entry(
        &acme.join("base/base.tar.gz"),
        b"../\x1b]0;pwned\x07\x1b[2Jevil",
    );
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let out = run(walwarden(&tmp.path().join("home"))
        .args(["restore", "acme", "--dry-run", "--root"])
        .arg(&root)
        .arg("--data-dir")
        .arg(&data)
        .arg("--pg-bin")
        .arg(fake_pg_bin(tmp.path())));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        !out.stderr.iter().any(|b| *b == 0x1b || *b == 0x07),
        "{}",
        show(&out)
    );
    let error = stderr_line(&out, "error: ");
    assert!(
        error.contains("../\\x1b]0;pwned\\x07\\x1b[2Jevil"),
        "{error}"
    );
}

/// Probe 5: a relative --root (and --data-dir, --pg-bin) passed preflight
/// and failed only once the server started, after the data directory was
/// moved aside. They are made absolute before anything.
#[test]
fn relative_paths_are_made_absolute_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    // The PostgreSQL user checks the archive is readable: let it through.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("acme"), 0x12);
    fake_pg_bin(tmp.path());
    fs::create_dir(tmp.path().join("data")).unwrap();
    let out = run(walwarden(&tmp.path().join("home"))
        .current_dir(tmp.path())
        .args([
            "restore",
            "acme",
            "--dry-run",
            "--root",
            "backups",
            "--data-dir",
            "data",
            "--pg-bin",
            "fake-pg-bin",
        ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The archive and the plan the restore_command reads are named absolutely.
    assert!(
        stderr.contains(&format!("tar xzf {}/acme/base/base.tar.gz", root.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "--plan ''{}/data.walwarden-wal-get.json'' %f %p",
            tmp.path().display()
        )),
        "{stderr}"
    );
    let pg_ctl = tmp.path().join("fake-pg-bin/pg_ctl");
    assert!(stderr.contains(&pg_ctl.display().to_string()), "{stderr}");
    let doc = json(&run(walwarden(&tmp.path().join("home"))
        .current_dir(tmp.path())
        .args(["check", "--json", "--root", "backups"])));
    assert_eq!(doc["root"].as_str(), Some(root.to_str().unwrap()));
}

/// A restore of acme into `data_dir` with `extra` that preflight must
/// refuse (exit 3, an `error:` line holding `said`) with nothing under `tmp`
/// written, moved or deleted.
fn assert_refused_before_anything(
    tmp: &Path,
    pg_bin: &Path,
    data_dir: &Path,
    extra: &[&str],
    said: &str,
) {
    let before = listing(tmp);
    let error = refused_restore(
        &tmp.join("home"),
        &tmp.join("backups"),
        data_dir,
        pg_bin,
        extra,
    );
    assert!(error.contains(said), "{extra:?}: {error}");
    let changed = changed_since(tmp, &before);
    assert!(changed.is_empty(), "{extra:?} touched {changed:#?}");
}

/// A scratch archive with client acme and an old data directory `name`
/// holding `precious`; returns the fake PostgreSQL binaries and that folder.
fn refusal_setup(tmp: &Path, name: &str) -> (PathBuf, PathBuf) {
    client(&tmp.join("backups"), named("acme"), 0x12);
    let pg_bin = fake_pg_bin(tmp);
    let data = tmp.join(name);
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    fs::write(data.join("precious"), "old data").unwrap();
    (pg_bin, data)
}

/// Probes 4 and 5: a target time in 1999 or 2099 or garbage, and a `--set`
/// of archive_mode, are refused by preflight with nothing touched.
#[test]
fn bad_target_times_and_guarded_settings_are_refused_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg_bin, data) = refusal_setup(tmp.path(), "main");
    for (extra, said) in [
        (&["--target-time", "2099-01-01 00:00:00+00"][..], "window"),
        (&["--target-time", "1999-01-01 00:00:00+00"][..], "window"),
        (&["--target-time", "garbage"][..], "garbage"),
        (&["--set", "archive_mode=on"][..], "--force unsafe-settings"),
        (
            &["--set", "restore_command=cp /x %p"][..],
            "--force unsafe-settings",
        ),
    ] {
        assert_refused_before_anything(tmp.path(), &pg_bin, &data, extra, said);
    }
    assert_eq!(
        fs::read_to_string(data.join("precious")).unwrap(),
        "old data"
    );
}

/// A data directory whose name restore_command cannot carry (a tab) was
/// refused only at the recovery-config step, after the old data had been
/// moved aside and the base unpacked. Now the preflight refuses it.
#[test]
fn a_data_dir_restore_command_cannot_name_is_refused_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg_bin, data) = refusal_setup(tmp.path(), "ma\tin");
    assert_refused_before_anything(
        tmp.path(),
        &pg_bin,
        &data,
        &[],
        "restore_command cannot name it",
    );
}

/// `--data-dir x/main/..` names x, but the restore's siblings (the aside
/// folder, the restore_command's plan and spool) were placed from the name
/// and landed inside it. Refused in preflight.
#[test]
fn a_data_dir_named_through_dot_dot_is_refused_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg_bin, data) = refusal_setup(tmp.path(), "x/main");
    assert_refused_before_anything(tmp.path(), &pg_bin, &data.join(".."), &[], "'..'");
}

/// Probe 10, run as an unprivileged user: a mode-000 client folder was CRIT
/// "no base/ folder", an unreadable segment `corrupt_segment` "copy again".
#[test]
fn not_being_able_to_read_is_unknown_with_its_own_code_never_damage() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("fine"), 0x12);
    let locked = client(&root, named("locked"), 0x12);
    let seg = client(&root, named("seg"), 0x12);
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(
        seg.join("wal/000000010000000000000011.gz"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let root_user = nix::unistd::geteuid().is_root();
    for deep in [false, true] {
        let mut command = if root_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        command
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(format!("cache-{deep}")))
            .env_remove("WALWARDEN_ROOT")
            .env_remove("WALWARDEN_CONFIG")
            .args(["check", "--json", "--root"])
            .arg(&root);
        if deep {
            command.arg("--deep");
        }
        let out = run(&mut command);
        let doc = json(&out);
        let found = statuses(&doc);
        assert_eq!(found["fine"].0, "ok", "{doc:#}");
        assert_eq!(
            found["locked"],
            ("unknown".to_owned(), vec!["permission_denied".to_owned()]),
            "cannot read is not a missing base: {doc:#}"
        );
        let (status, codes) = &found["seg"];
        assert_eq!(status, "unknown", "{doc:#}");
        assert!(codes.contains(&"permission_denied".to_owned()), "{codes:?}");
        assert!(!codes.contains(&"corrupt_segment".to_owned()), "{codes:?}");
        let fix = doc["clients"][1]["problems"][0]["fix"].as_str().unwrap();
        assert!(fix.contains("group") && fix.contains("never o+r"), "{fix}");
        assert_eq!(out.status.code(), Some(3));
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Advice keeps clients apart: access through a group, never `o+r`/`o+rx`
/// (every other client's user could read), never `chown -R postgres` on a
/// client's archive (its own user writes there).
#[test]
fn no_advice_opens_a_clients_folder_to_others() {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut offenders = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let opens = [
                "o+r",
                "o+rx",
                "a+r",
                "go+r",
                "chmod 755 WAL",
                "chmod -R 755",
            ]
            .iter()
            .any(|bad| {
                line.match_indices(bad).any(|(at, _)| {
                    // Said only as what never to do.
                    let mut start = at.saturating_sub(40);
                    while !line.is_char_boundary(start) {
                        start -= 1;
                    }
                    let before = &line[start..at];
                    !before.contains("never")
                })
            });
            let gives_away = line.contains("chown -R postgres") && !line.contains("DATA");
            if opens || gives_away {
                offenders.push(format!(
                    "{}:{}: {}",
                    file.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "advice that opens a client's archive:\n{}",
        offenders.join("\n")
    );
}

/// `setup --user postgres` would write the key to /home/postgres, not to
/// postgres's home from passwd.
#[test]
fn setup_takes_the_users_home_from_passwd() {
    let Ok(Some(postgres)) = nix::unistd::User::from_name("postgres") else {
        panic!("the tests need the postgres user (the PostgreSQL package makes it)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id.pub");
    fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxTyhvgT6G3T7dF0zE1w9A0y2dS6wFJk3gZQ2b8o3dE postgres@db\n",
    )
    .unwrap();
    let out = run(walwarden(&tmp.path().join("home"))
        .args(["setup", "acme", "--user", "postgres", "--dry-run", "--root"])
        .arg(tmp.path().join("backups"))
        .arg("--key")
        .arg(&key));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let expected = postgres.dir.join(".ssh/authorized_keys");
    assert!(
        stdout.contains(&expected.display().to_string()),
        "{expected:?}:\n{stdout}"
    );
    if postgres.dir != Path::new("/home/postgres") {
        assert!(!stdout.contains("/home/postgres"), "{stdout}");
    }
}

/// A deleted client stayed on the dashboard (1 run in 6 under folder churn)
/// until `r`: a full scan that listed it before it went landed after the
/// re-read that found it gone.
#[test]
fn a_deleted_client_leaves_the_dashboard_even_after_a_stale_scan() {
    use walwarden::archive::catalog::{self, ScanOptions};
    use walwarden::tui::app::{App, Command as AppCommand, Event};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("keep"), 0x12);
    let gone = client(&root, named("gone"), 0x12);
    let scan = || catalog::scan(&root, &ScanOptions::default());
    let mut app = App::new(
        root.clone(),
        walwarden::config::Config::default(),
        SystemTime::now(),
    );
    app.update(Event::Scanned(scan()));
    assert_eq!(app.rows.len(), 2);
    // A full scan lists the root, then the folder goes.
    let stale = scan();
    fs::remove_dir_all(&gone).unwrap();
    let reread = catalog::scan_client(&root, "gone", &ScanOptions::default())
        .map(Box::new)
        .map_err(|e| e.to_string());
    assert!(reread.is_err());
    app.update(Event::ClientScanned {
        name: "gone".into(),
        result: reread,
    });
    assert_eq!(app.rows.len(), 1);
    let commands = app.update(Event::Scanned(stale));
    let names: Vec<&str> = app.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["keep"], "the stale scan does not bring it back");
    assert!(
        commands.contains(&AppCommand::RescanClient("gone".into())),
        "{commands:?}"
    );
    // A folder removed while the scan runs is no client of it either.
    let catalog = scan().unwrap();
    assert!(catalog.client("gone").is_none());
}

/// A new problem code (here `permission_denied`) is documented where
/// scripts and people look it up: the JSON schema and the README's table.
#[test]
fn every_problem_code_is_in_the_schema_and_the_readme() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let health = fs::read_to_string(dir.join("src/checks/health.rs")).unwrap();
    let schema = fs::read_to_string(dir.join("assets/check-schema.json")).unwrap();
    let readme = fs::read_to_string(dir.join("README.md")).unwrap();
    let codes: Vec<&str> = health
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ProblemCode::"))
        .filter_map(|l| l.split_once(" => \"")?.1.strip_suffix("\","))
        .collect();
    assert!(
        codes.len() > 20 && codes.contains(&"permission_denied"),
        "{codes:?}"
    );
    for code in codes {
        assert!(
            schema.contains(&format!("\"{code}\"")),
            "{code} not in the schema"
        );
        assert!(
            readme.contains(&format!("| `{code}` |")),
            "{code} not in the README"
        );
    }
}

/// The watcher followed links (notify's default): a client's `ln -s / wal/x`
/// had the dashboard walk and watch the whole file system.
#[test]
fn the_watcher_never_follows_a_link_out_of_the_root() {
    use walwarden::archive::watch::{RootWatcher, WalChange};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let acme = client(&root, named("acme"), 0x12);
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, acme.join("wal/out")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<WalChange>();
    let tx = std::sync::Mutex::new(tx);
    let _watcher = RootWatcher::start(&root, move |change| {
        let _ = tx.lock().unwrap().send(change);
    })
    .unwrap();
    fs::write(outside.join("behind-the-link"), b"x").unwrap();
    let behind: Vec<WalChange> =
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(2)).ok()).collect();
    assert!(
        behind.is_empty(),
        "a change behind the link was watched: {behind:?}"
    );
    // A change inside the root is seen: the watcher works.
    fs::write(acme.join("base/marker"), b"x").unwrap();
    let seen = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        matches!(&seen, Ok(WalChange::ClientChanged { client }) if client == "acme"),
        "{seen:?}"
    );
}

/// `verify --min-segments 0 --window 1s` showed a FAIL: no segment was asked
/// for, and none came.
#[test]
fn verify_asking_no_segment_passes_a_quiet_window() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    client(&root, named("acme"), 0x12);
    let out = run(walwarden(&tmp.path().join("home"))
        .args([
            "verify",
            "acme",
            "--min-segments",
            "0",
            "--window",
            "1s",
            "--root",
        ])
        .arg(&root));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout.starts_with("walwarden verify acme: PASS"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
