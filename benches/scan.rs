//! Benchmark: `catalog::scan` over a root of 1,000,000 WAL files, against
//! `find ROOT -type f -printf '%s %T@ %p\n'` (the baseline in the domain notes)
//! and, when the release binary is built, `walwarden check --json`.
//!
//! Run with `cargo bench --bench scan` (see benches/README.md). Not a test:
//! nothing here asserts on time. It prints medians, extremes, the ratio
//! median(scan) / median(find) and peak memory; the goal is a ratio <= 1.0
//! and a peak under 150 MB.
//!
//! Environment:
//! - `WALWARDEN_BENCH_DIR`: where the tree lives (default /tmp/walwarden-bench);
//!   built once, reused while its marker file matches the layout.
//! - `WALWARDEN_BENCH_RUNS`: timed runs per contender (default 5).
//! - `WALWARDEN_BENCH_COLD=1`: also measure with the page cache dropped before
//!   every run (root only).
//! - `WALWARDEN_BIN`: the walwarden binary for (c) (default: target/release/walwarden).
//!
//! The process re-executes itself: `--build-tree DIR` creates the tree and
//! `--scan-once ROOT` scans once and prints its VmHWM, so neither the tree
//! building nor the other contenders inflate the scan's peak memory.

mod common;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use walwarden::archive::catalog::{self, Catalog, ScanOptions};
use walwarden::demo::Cluster;

const CLIENTS: usize = 50;
const SEGMENTS: u64 = 20_000;
const SEG_SIZE: u32 = 16 << 20;
/// The base backup starts here (an arbitrary segment number, past log 0).
const FIRST_SEGMENT: u64 = 0x1_20;
/// Stand-in content for all segments but the first of each client.
const PLACEHOLDER: [u8; 32] = {
    let mut bytes = [0u8; 32];
    bytes[0] = 0x1f;
    bytes[1] = 0x8b;
    bytes
};
/// Written when the tree is complete; a tree is reused only when this matches.
const LAYOUT: &str = "walwarden scan bench tree v1: 50 clients x 20000 segments (16 MiB, \
                      first gzip'ed, others 32-byte placeholders), base backup at segment 0x120\n";
const DATA: common::Reusable = common::Reusable {
    complete: ".walwarden-bench-complete",
    owner: ".walwarden-bench-owned",
    env_var: "WALWARDEN_BENCH_DIR",
    bench: "scan",
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--build-tree") => return build_tree(Path::new(&args[1])),
        Some("--scan-once") => return scan_once(Path::new(&args[1])),
        _ => {} // `cargo bench` passes `--bench`; anything else is ignored.
    }
    let dir = bench_dir();
    let root = dir.join("root");
    ensure_tree(&dir, &root);
    let runs: usize = std::env::var("WALWARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let check_bin = locate_walwarden();
    let config = dir.join("empty-config.toml");
    fs::write(&config, "").expect("cannot write the empty config");
    let contenders = Contenders {
        root: &root,
        check: check_bin.as_ref().map(|bin| CheckRun {
            bin,
            config: &config,
            cache_home: dir.join("xdg-cache"),
        }),
    };

    println!("machine: {}", machine());
    println!(
        "tree:    {} ({} clients x {} segments)",
        root.display(),
        CLIENTS,
        SEGMENTS
    );

    // Warm-up (fills the page cache, checks what each side sees); not counted.
    let catalog = catalog::scan(&root, &ScanOptions::default()).expect("scan failed");
    let scanned = validate(&catalog);
    drop(catalog);
    let found = contenders.find_count();
    println!("warm-up: scan saw {scanned} files, find printed {found} lines");
    if let Some(check) = &contenders.check {
        let code = check.run(&root);
        println!("warm-up: {} check exited {code}", check.bin.display());
    } else {
        println!("(c) skipped: no target/release/walwarden (run `cargo build --release`)");
    }

    println!("\nwarm cache, {runs} runs each, alternating scan / find / check:");
    let warm = contenders.measure(runs, false);
    // Right after the in-process scans, before anything else allocates here.
    let parent_hwm = vm_hwm_kib();
    warm.print();

    let once_hwm = scan_once_child(&root);
    let check_rss = contenders.check.as_ref().and_then(|c| c.max_rss_kib(&root));
    println!("\npeak memory:");
    println!(
        "  bench process after {runs} in-process scans (VmHWM): {}",
        mib(parent_hwm)
    );
    println!(
        "  one scan in a fresh process (VmHWM):             {}",
        mib(once_hwm)
    );
    if let Some(rss) = check_rss {
        println!(
            "  walwarden check --json (/usr/bin/time -v max RSS): {}",
            mib(Some(rss))
        );
    }

    if std::env::var("WALWARDEN_BENCH_COLD").as_deref() == Ok("1") {
        if effective_uid() == Some(0) {
            println!(
                "\ncold cache (sync; echo 3 > /proc/sys/vm/drop_caches before every run), {runs} runs each:"
            );
            contenders.measure(runs, true).print();
        } else {
            println!("\ncold cache skipped: WALWARDEN_BENCH_COLD=1 needs root");
        }
    }

    if let Ok(out) = Command::new("du").arg("-sh").arg(&dir).output() {
        print!(
            "\ntree size (du -sh): {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

// ---------------------------------------------------------------------------
// The tree

fn bench_dir() -> PathBuf {
    common::bench_dir("WALWARDEN_BENCH_DIR", "/tmp/walwarden-bench")
}

/// Reuses a complete tree; otherwise builds it (in a child process).
fn ensure_tree(dir: &Path, root: &Path) {
    if DATA.reuse_or_claim(dir, LAYOUT) {
        return;
    }
    if root.exists() {
        println!("removing the incomplete tree {}", root.display());
        fs::remove_dir_all(root).expect("cannot remove the old tree");
    }
    fs::create_dir_all(root).expect("cannot create the bench dir");

    println!(
        "building {} files in {} (once; reused later)",
        CLIENTS as u64 * (SEGMENTS + 3),
        root.display()
    );
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().unwrap())
        .arg("--build-tree")
        .arg(root)
        .status()
        .expect("cannot re-run the bench to build the tree");
    assert!(status.success(), "building the tree failed: {status}");
    // Flush the dirty pages now, so writeback does not run during the timings.
    let _ = Command::new("sync").status();
    println!("built in {:.1} s", started.elapsed().as_secs_f64());
    DATA.mark_complete(dir, LAYOUT);
}

/// Child: writes ROOT/clientNN/{base,wal} for every client, in parallel.
fn build_tree(root: &Path) {
    /// Counts a worker as finished even when it panics.
    struct Finished<'a>(&'a AtomicUsize);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let made = AtomicU64::new(0);
    let total = CLIENTS as u64 * (SEGMENTS + 3);
    // File creation waits on the file system as much as on the CPU: two per core.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let taken = SystemTime::now() - Duration::from_secs(86_400);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let _finished = Finished(&finished);
                loop {
                    let client = next.fetch_add(1, Ordering::Relaxed);
                    if client >= CLIENTS {
                        break;
                    }
                    build_client(root, client, taken, &made).expect("cannot build a client");
                }
            });
        }
        let started = Instant::now();
        let mut reported = Instant::now();
        while finished.load(Ordering::Relaxed) < threads {
            std::thread::sleep(Duration::from_millis(100));
            if reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                let n = made.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                println!("  {n:>9} / {total} files, {rate:.0} files/s");
            }
        }
    });
    println!("  {} files written", made.load(Ordering::Relaxed));
}

fn build_client(root: &Path, index: usize, taken: SystemTime, made: &AtomicU64) -> io::Result<()> {
    let cluster = Cluster::new(7_300_000_000_000_000_000 + index as u64, SEG_SIZE);
    let client_dir = root.join(format!("client{:02}", index + 1));
    let wal = client_dir.join("wal");
    // base/base.tar.gz, base/pg_wal.tar.gz (two 16 MiB segments of zeros) and wal/….backup.gz.
    cluster.write_base_backup(
        &client_dir,
        cluster.id(1, FIRST_SEGMENT),
        cluster.id(1, FIRST_SEGMENT + 1),
        taken,
    )?;
    // One real segment: its header gives the scan the segment size.
    cluster.archive_segment(&wal, cluster.id(1, FIRST_SEGMENT), Some(taken))?;
    made.fetch_add(4, Ordering::Relaxed);
    let mut path = wal.clone();
    for segno in FIRST_SEGMENT + 1..FIRST_SEGMENT + SEGMENTS {
        path.push(format!("{}.gz", cluster.id(1, segno).file_name(SEG_SIZE)));
        fs::write(&path, PLACEHOLDER)?;
        path.pop();
        made.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Structural checks on a scan of the tree (no timing involved); returns the file count.
fn validate(catalog: &Catalog) -> usize {
    assert_eq!(catalog.clients.len(), CLIENTS, "client count");
    let mut files = 0;
    for client in &catalog.clients {
        let wal = &client.wal;
        let c = &client.continuity;
        assert_eq!(
            wal.segments.len() as u64,
            SEGMENTS,
            "{}: segments",
            client.name
        );
        assert_eq!(
            wal.segment_size,
            Some(SEG_SIZE),
            "{}: segment size",
            client.name
        );
        assert!(c.gaps.is_empty(), "{}: gaps {:?}", client.name, c.gaps);
        let last = Cluster::new(0, SEG_SIZE).id(1, FIRST_SEGMENT + SEGMENTS - 1);
        assert_eq!(
            c.restorable_through.as_deref(),
            Some(last.file_name(SEG_SIZE).as_str()),
            "{}: restorable through",
            client.name
        );
        files += wal.segments.len()
            + wal.backup_files.len()
            + wal.histories.len()
            + wal.in_flight.len()
            + wal.others.len()
            + client.base.files.len()
            + client.stray.len();
    }
    files
}

// ---------------------------------------------------------------------------
// The contenders

struct Contenders<'a> {
    root: &'a Path,
    check: Option<CheckRun<'a>>,
}

struct CheckRun<'a> {
    bin: &'a Path,
    config: &'a Path,
    cache_home: PathBuf,
}

impl CheckRun<'_> {
    fn command(&self, root: &Path) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.arg("--config")
            .arg(self.config)
            .arg("check")
            .arg("--root")
            .arg(root)
            .arg("--json")
            // A private cache dir: no user state read or written.
            .env("XDG_CACHE_HOME", &self.cache_home)
            .env_remove("WALWARDEN_LOG")
            .stdout(dev_null())
            .stderr(Stdio::null());
        cmd
    }

    /// Exit code; 0-2 are health verdicts, 3 is an error.
    fn run(&self, root: &Path) -> i32 {
        let status = self.command(root).status().expect("cannot run walwarden");
        status.code().unwrap_or(-1)
    }

    fn max_rss_kib(&self, root: &Path) -> Option<u64> {
        let inner = self.command(root);
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-v")
            .arg(inner.get_program())
            .args(inner.get_args())
            .env("XDG_CACHE_HOME", &self.cache_home)
            .stdout(dev_null())
            .stderr(Stdio::piped());
        let out = cmd.output().ok()?;
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok())
    }
}

struct Timings {
    scan: Vec<Duration>,
    find: Vec<Duration>,
    check: Vec<Duration>,
}

impl Contenders<'_> {
    fn find_command(&self) -> Command {
        let mut cmd = Command::new("find");
        cmd.arg(self.root)
            .args(["-type", "f", "-printf", "%s %T@ %p\\n"]);
        cmd
    }

    /// Runs find once with a pipe, counting its lines as they stream by.
    fn find_count(&self) -> u64 {
        let mut child = self
            .find_command()
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run find");
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut lines = 0;
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading find's output: {e}"),
            }
        }
        assert!(child.wait().unwrap().success(), "find failed");
        lines
    }

    fn measure(&self, runs: usize, cold: bool) -> Timings {
        let mut t = Timings {
            scan: Vec::new(),
            find: Vec::new(),
            check: Vec::new(),
        };
        for run in 1..=runs {
            if cold {
                drop_caches();
            }
            let started = Instant::now();
            let catalog = catalog::scan(self.root, &ScanOptions::default()).expect("scan failed");
            t.scan.push(started.elapsed());
            drop(catalog);

            if cold {
                drop_caches();
            }
            let started = Instant::now();
            let status = self
                .find_command()
                .stdout(dev_null())
                .status()
                .expect("cannot run find");
            t.find.push(started.elapsed());
            assert!(status.success(), "find failed");

            if let Some(check) = &self.check {
                if cold {
                    drop_caches();
                }
                let started = Instant::now();
                let code = check.run(self.root);
                t.check.push(started.elapsed());
                assert!((0..=2).contains(&code), "walwarden check exited {code}");
            }
            let last = |v: &[Duration]| v.last().map_or("-".into(), |d| secs(*d));
            println!(
                "  run {run}: scan {}  find {}  check {}",
                last(&t.scan),
                last(&t.find),
                last(&t.check)
            );
        }
        t
    }
}

impl Timings {
    fn print(&self) {
        println!();
        println!("| contender | runs | median | min | max |");
        println!("|---|---:|---:|---:|---:|");
        let rows = [
            ("catalog::scan (in-process)", &self.scan),
            ("find -printf > /dev/null", &self.find),
            ("walwarden check --json > /dev/null", &self.check),
        ];
        for (name, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
            let (median, min, max) = stats(v);
            println!(
                "| {name} | {} | {} | {} | {} |",
                v.len(),
                secs(median),
                secs(min),
                secs(max)
            );
        }
        let scan = stats(&self.scan).0.as_secs_f64();
        let find = stats(&self.find).0.as_secs_f64();
        println!("\nratio median(scan) / median(find) = {:.2}", scan / find);
        if !self.check.is_empty() {
            let check = stats(&self.check).0.as_secs_f64();
            println!("ratio median(check) / median(find) = {:.2}", check / find);
        }
    }
}

fn stats(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    };
    (median, s[0], s[n - 1])
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Memory and the machine

/// Child: one scan in a fresh process, then its peak RSS.
fn scan_once(root: &Path) {
    let catalog = catalog::scan(root, &ScanOptions::default()).expect("scan failed");
    let hwm = vm_hwm_kib();
    drop(catalog);
    println!("VmHWM {}", hwm.unwrap_or(0));
}

fn scan_once_child(root: &Path) -> Option<u64> {
    let out = Command::new(std::env::current_exe().ok()?)
        .arg("--scan-once")
        .arg(root)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM "))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&v| v > 0)
}

fn vm_hwm_kib() -> Option<u64> {
    proc_status_field("VmHWM:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn effective_uid() -> Option<u32> {
    proc_status_field("Uid:")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn proc_status_field(key: &str) -> Option<String> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::to_owned))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("unknown".into(), |k| {
        format!("{:.1} MiB ({k} kB)", k as f64 / 1024.0)
    })
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").expect("cannot drop caches (root needed)");
}

fn dev_null() -> Stdio {
    File::options()
        .write(true)
        .open("/dev/null")
        .map_or(Stdio::null(), Stdio::from)
}

/// target/release/walwarden next to this bench binary (target/release/deps/scan-…).
fn locate_walwarden() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("WALWARDEN_BIN") {
        return Some(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    [
        target.join("release/walwarden"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/walwarden"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn machine() -> String {
    let mem = proc_meminfo_gib().map_or(String::new(), |g| format!(", {g:.0} GiB RAM"));
    format!("{}{mem}", common::machine())
}

fn proc_meminfo_gib() -> Option<f64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0 / 1024.0)
}
