//! Benchmark: `restore::unpack` against `tar xzf` on two base.tar.gz of
//! 0.5-1 GB unpacked, in the same run. Unpacking is on the clock while a
//! client is down; the goal is at most 0.25 of `tar xzf`'s time on both
//! (issue 14).
//!
//! The tarballs are laid out like pg_basebackup's (backup_label first,
//! `./pg_wal/archive_status/`, catalogs of four databases, global/pg_control
//! last) with synthetic 8 KiB heap and btree pages:
//! - `pgbench`: pgbench_accounts of scale 40 (4,000,000 rows, 61 per page)
//!   and its primary key: about 18:1 with gzip -6, like real pgbench data;
//! - `md5`: 9,000,000 rows of (id int, r bigint random, md5 text random):
//!   about 2:1, like a table of random text.
//!
//! Each is written as a tar by the tar crate and compressed with the `gzip`
//! binary at level 6, once, into `WALWARDEN_BENCH_UNPACK_DIR` (default
//! /tmp/walwarden-bench-unpack; never under /var/lib/postgresql), then reused.
//!
//! Contenders, alternating (the order rotates every run), warm page cache,
//! each into an empty directory made and `sync`ed outside the timer:
//! - `walwarden unpack`: in-process, inflating on a second thread when the
//!   machine has two cores (as here);
//! - `walwarden 1 thread`: the same code never starting the inflate thread;
//! - `walwarden 2 threads`: the same code inflating on the second thread
//!   from the first byte;
//! - `tar xzf`: GNU tar (gzip as its child process);
//! - `flate2 inflate only`, `gzip -dc > /dev/null`: the decompression floors.
//!
//! As root, the walwarden contenders chown every entry to 0:0, as tar xzf
//! does from the headers. Nothing is fsync'ed by any contender. After the
//! first run, walwarden's tree is compared with tar's (names, kinds, modes,
//! mtimes, contents).
//!
//! Run with `cargo bench --bench unpack` (see benches/README.md).
//! Environment: `WALWARDEN_BENCH_RUNS` (3), `WALWARDEN_BENCH_UNPACK_DIR`,
//! `WALWARDEN_BENCH_UNPACK_ONLY=pgbench|md5` (one tarball).
//! Not a test: nothing asserts on time.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use walwarden::ops::restore::unpack::{self, UnpackOptions};

const PAGE: usize = 8192;
const LAYOUT: &str = "walwarden unpack bench v1: pgbench scale 40 + md5 9,000,000 rows, gzip -6\n";
const DATA: common::Reusable = common::Reusable {
    complete: ".walwarden-bench-complete",
    owner: ".walwarden-bench-owned",
    env_var: "WALWARDEN_BENCH_UNPACK_DIR",
    bench: "unpack",
};
/// Header time stamp of every entry (2026-11-25).
const MTIME: u64 = 1_795_600_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dataset {
    Pgbench,
    Md5,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Pgbench => "pgbench",
            Dataset::Md5 => "md5",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Walwarden,
    WalwardenOneThread,
    WalwardenTwoThreads,
    TarXzf,
    InflateOnly,
    GzipDc,
}

const CONTENDERS: [Contender; 6] = [
    Contender::Walwarden,
    Contender::TarXzf,
    Contender::WalwardenOneThread,
    Contender::WalwardenTwoThreads,
    Contender::InflateOnly,
    Contender::GzipDc,
];

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::Walwarden => "walwarden unpack (default)",
            Contender::WalwardenOneThread => "walwarden unpack (1 thread)",
            Contender::WalwardenTwoThreads => "walwarden unpack (2 threads)",
            Contender::TarXzf => "tar xzf",
            Contender::InflateOnly => "flate2 inflate only -> sink",
            Contender::GzipDc => "gzip -dc > /dev/null",
        }
    }

    fn out_dir(self, dir: &Path) -> Option<PathBuf> {
        match self {
            Contender::Walwarden => Some(dir.join("out-walwarden")),
            Contender::WalwardenOneThread => Some(dir.join("out-walwarden-1")),
            Contender::WalwardenTwoThreads => Some(dir.join("out-walwarden-2")),
            Contender::TarXzf => Some(dir.join("out-tar")),
            Contender::InflateOnly | Contender::GzipDc => None,
        }
    }
}

struct Sample {
    wall: Duration,
    cpu: Duration,
    /// For walwarden: whether inflating ran on a second thread.
    inflate_thread: Option<bool>,
}

impl Sample {
    fn note(&self) -> &'static str {
        match self.inflate_thread {
            Some(true) => ", inflate thread",
            Some(false) => ", inline",
            None => "",
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, contender, dataset, ..] = args.as_slice()
        && flag == "--once"
    {
        return once(contender, dataset);
    }
    let dir = bench_dir();
    let runs: usize = std::env::var("WALWARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let only = std::env::var("WALWARDEN_BENCH_UNPACK_ONLY").ok();
    ensure_tarballs(&dir);
    println!("machine: {}", machine());
    let owner = (effective_uid() == 0).then_some((0, 0));
    let options = UnpackOptions { owner };

    for dataset in [Dataset::Pgbench, Dataset::Md5] {
        if only.as_deref().is_some_and(|o| o != dataset.name()) {
            continue;
        }
        let tarball = dir.join(dataset.name()).join("base.tar.gz");
        warm(&tarball);
        let started = Instant::now();
        let plan = unpack::scan_tarball(&tarball).expect("scan_tarball failed");
        let scan_time = started.elapsed();
        assert!(plan.is_safe(), "the bench tarball has refused entries");
        println!(
            "\n== {}: {} ({} compressed, {} unpacked, {:.1}:1, {} entries: {} files, {} dirs)",
            dataset.name(),
            tarball.display(),
            mb(plan.compressed_bytes),
            mb(plan.unpacked_bytes),
            plan.unpacked_bytes as f64 / plan.compressed_bytes as f64,
            plan.entries,
            plan.files,
            plan.dirs
        );
        println!(
            "scan_tarball (one pass, headers only): {:.3} s",
            scan_time.as_secs_f64()
        );

        let mut samples: BTreeMap<Contender, Vec<Sample>> = BTreeMap::new();
        for run in 0..runs {
            let mut order = CONTENDERS;
            order.rotate_left(run % CONTENDERS.len());
            for contender in order {
                let sample = measure(contender, &tarball, &dir, &options, plan.unpacked_bytes);
                println!(
                    "  run {}: {:<30} {:>7.3} s  (cpu {:.2} s{})",
                    run + 1,
                    contender.label(),
                    sample.wall.as_secs_f64(),
                    sample.cpu.as_secs_f64(),
                    sample.note()
                );
                samples.entry(contender).or_default().push(sample);
            }
            if run == 0 {
                compare_trees(&dir);
            }
        }
        for contender in CONTENDERS {
            if let Some(out) = contender.out_dir(&dir) {
                let _ = fs::remove_dir_all(out);
            }
        }
        print_table(dataset, &plan, &samples, runs);
    }
}

/// `--once CONTENDER DATASET`: one timed run, for `perf record`/`strace`;
/// CONTENDER is walwarden, walwarden-1, walwarden-2, tar, inflate or gzip. After a
/// walwarden run, `sync_tree` is timed too.
fn once(contender: &str, dataset: &str) {
    let dir = bench_dir();
    ensure_tarballs(&dir);
    let contender = match contender {
        "walwarden" => Contender::Walwarden,
        "walwarden-1" => Contender::WalwardenOneThread,
        "walwarden-2" => Contender::WalwardenTwoThreads,
        "tar" => Contender::TarXzf,
        "inflate" => Contender::InflateOnly,
        "gzip" => Contender::GzipDc,
        other => panic!("unknown contender {other}"),
    };
    let tarball = dir.join(dataset).join("base.tar.gz");
    let plan = unpack::scan_tarball(&tarball).expect("scan_tarball failed");
    let options = UnpackOptions {
        owner: (effective_uid() == 0).then_some((0, 0)),
    };
    let sample = measure(contender, &tarball, &dir, &options, plan.unpacked_bytes);
    println!(
        "{}: {:.3} s (cpu {:.2} s{})",
        contender.label(),
        sample.wall.as_secs_f64(),
        sample.cpu.as_secs_f64(),
        sample.note()
    );
    if let Some(out) = contender.out_dir(&dir) {
        if matches!(
            contender,
            Contender::Walwarden | Contender::WalwardenOneThread | Contender::WalwardenTwoThreads
        ) {
            let started = Instant::now();
            unpack::sync_tree(&out).expect("sync_tree failed");
            println!(
                "sync_tree afterwards: {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
        let _ = fs::remove_dir_all(out);
    }
}

fn measure(
    contender: Contender,
    tarball: &Path,
    dir: &Path,
    options: &UnpackOptions,
    unpacked: u64,
) -> Sample {
    let out = contender.out_dir(dir);
    if let Some(out) = &out {
        if out.exists() {
            fs::remove_dir_all(out).expect("cannot empty the output dir");
        }
        fs::create_dir(out).expect("cannot make the output dir");
    }
    // Write back the previous contender's files now, not during this one.
    let synced = Command::new("sync").status().expect("cannot run sync");
    assert!(synced.success());

    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut inflate_thread = None;
    match contender {
        Contender::Walwarden | Contender::WalwardenOneThread | Contender::WalwardenTwoThreads => {
            let out = out.as_deref().unwrap_or(dir);
            let run = match contender {
                Contender::WalwardenOneThread => unpack::unpack_single_threaded,
                Contender::WalwardenTwoThreads => unpack::unpack_two_threaded,
                _ => unpack::unpack,
            };
            let summary = run(tarball, out, options, &mut |_| {}).expect("walwarden unpack failed");
            assert_eq!(summary.bytes, unpacked);
            inflate_thread = Some(summary.inflate_thread);
        }
        Contender::TarXzf => {
            let out = out.as_deref().unwrap_or(dir);
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(tarball)
                .arg("-C")
                .arg(out)
                .status()
                .expect("cannot run tar");
            assert!(status.success(), "tar xzf failed: {status}");
        }
        Contender::InflateOnly => {
            let file = File::open(tarball).expect("cannot open the tarball");
            let mut decoder = MultiGzDecoder::new(io::BufReader::with_capacity(256 * 1024, file));
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = decoder.read(&mut buf).expect("inflate failed");
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            assert!(total > unpacked);
        }
        Contender::GzipDc => {
            let status = Command::new("gzip")
                .arg("-dc")
                .arg(tarball)
                .stdout(Stdio::null())
                .status()
                .expect("cannot run gzip");
            assert!(status.success(), "gzip -dc failed: {status}");
        }
    }
    let wall = started.elapsed();
    Sample {
        wall,
        cpu: cpu_time().saturating_sub(cpu_before),
        inflate_thread,
    }
}

fn print_table(
    dataset: Dataset,
    plan: &unpack::TarballPlan,
    samples: &BTreeMap<Contender, Vec<Sample>>,
    runs: usize,
) {
    let median_of = |c: Contender| samples.get(&c).map(|s| stats(s).0);
    let tar = median_of(Contender::TarXzf);
    println!(
        "\n{} ({} -> {}), {runs} runs, warm cache:\n",
        dataset.name(),
        mb(plan.compressed_bytes),
        mb(plan.unpacked_bytes)
    );
    println!("| contender | median | min | max | CPU median | median / tar xzf |");
    println!("|---|---:|---:|---:|---:|---:|");
    for contender in CONTENDERS {
        let Some(list) = samples.get(&contender) else {
            continue;
        };
        let (median, min, max, cpu) = stats(list);
        let ratio = tar.map_or(String::from("-"), |t| format!("{:.2}", median / t));
        println!(
            "| {} | {median:.3} s | {min:.3} s | {max:.3} s | {cpu:.2} s | {ratio} |",
            contender.label()
        );
    }
    if let (Some(ww), Some(inflate)) = (
        median_of(Contender::Walwarden),
        median_of(Contender::InflateOnly),
    ) {
        println!(
            "\nunpacked MB/s: walwarden {:.0}, flate2 inflate {:.0}, gzip -dc {:.0}; \
             walwarden / inflate-only = {:.2}",
            plan.unpacked_bytes as f64 / 1e6 / ww,
            plan.unpacked_bytes as f64 / 1e6 / inflate,
            median_of(Contender::GzipDc).map_or(0.0, |g| plan.unpacked_bytes as f64 / 1e6 / g),
            ww / inflate
        );
    }
}

/// (median, min, max, median CPU) in seconds.
fn stats(samples: &[Sample]) -> (f64, f64, f64, f64) {
    let mut wall: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64()).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu.as_secs_f64()).collect();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let median = |v: &[f64]| {
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    (median(&wall), wall[0], wall[wall.len() - 1], median(&cpu))
}

/// walwarden's tree against tar's: same names, kinds, modes, mtimes,
/// owners, sizes and contents.
fn compare_trees(dir: &Path) {
    let ours = dir.join("out-walwarden");
    let theirs = dir.join("out-tar");
    let a = listing(&ours);
    let b = listing(&theirs);
    assert_eq!(a.len(), b.len(), "entry counts differ");
    let mut tar_dir_times = 0;
    for ((path_a, meta_a), (path_b, meta_b)) in a.iter().zip(&b) {
        assert_eq!(path_a, path_b);
        if meta_a.0 == 'd' {
            // GNU tar sets a directory's time when it leaves it, so one that
            // gets more files later (global/ gets pg_control last) keeps the
            // time of the unpack; walwarden sets them all at the end.
            assert_eq!(meta_a.2, MTIME as i64, "{}", path_a.display());
            tar_dir_times += usize::from(meta_b.2 != MTIME as i64);
            let (mut a, mut b) = (*meta_a, *meta_b);
            (a.2, b.2) = (0, 0);
            assert_eq!(a, b, "{}", path_a.display());
        } else {
            assert_eq!(meta_a, meta_b, "{}", path_a.display());
        }
    }
    for (rel, meta) in &a {
        if meta.0 == 'f' {
            let same = files_equal(&ours.join(rel), &theirs.join(rel));
            assert!(same, "{} differs from tar's", rel.display());
        }
    }
    println!(
        "  check: walwarden's tree equals tar xzf's ({} entries: names, kinds, modes, mtimes, owners, contents)",
        a.len()
    );
    if tar_dir_times > 0 {
        println!(
            "  (except {tar_dir_times} directory mtime(s) that tar xzf left at the unpack time, \
             walwarden at the header's)"
        );
    }
}

type Meta = (char, u32, i64, u32, u32, u64);

fn listing(root: &Path) -> BTreeMap<PathBuf, Meta> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).expect("cannot list the output") {
            let path = item.expect("cannot list the output").path();
            let meta = fs::symlink_metadata(&path).expect("cannot stat the output");
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                'd'
            } else if meta.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            // Directory sizes depend on creation order, not on content.
            let size = if kind == 'd' { 0 } else { meta.size() };
            let rel = path.strip_prefix(root).unwrap_or(&path).to_owned();
            out.insert(
                rel,
                (
                    kind,
                    meta.mode() & 0o7777,
                    meta.mtime(),
                    meta.uid(),
                    meta.gid(),
                    size,
                ),
            );
        }
    }
    out
}

fn files_equal(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn warm(path: &Path) {
    let mut file = File::open(path).expect("cannot open the tarball");
    io::copy(&mut file, &mut io::sink()).expect("cannot read the tarball");
}

// ---------------------------------------------------------------------------
// The tarballs

fn bench_dir() -> PathBuf {
    common::bench_dir("WALWARDEN_BENCH_UNPACK_DIR", "/tmp/walwarden-bench-unpack")
}

fn ensure_tarballs(dir: &Path) {
    if DATA.reuse_or_claim(dir, LAYOUT) {
        return;
    }
    for dataset in [Dataset::Pgbench, Dataset::Md5] {
        let sub = dir.join(dataset.name());
        fs::create_dir_all(&sub).expect("cannot create the dataset dir");
        let tar_path = sub.join("base.tar");
        let started = Instant::now();
        println!("writing {} (once; reused later)", tar_path.display());
        write_base_tar(&tar_path, dataset).expect("cannot write the tar");
        println!("gzip -6 {} ...", tar_path.display());
        let gz = File::create(sub.join("base.tar.gz")).expect("cannot create base.tar.gz");
        let status = Command::new("gzip")
            .arg("-6")
            .arg("-c")
            .arg(&tar_path)
            .stdout(gz)
            .status()
            .expect("cannot run gzip");
        assert!(status.success(), "gzip failed: {status}");
        fs::remove_file(&tar_path).expect("cannot remove the plain tar");
        println!("  done in {:.0} s", started.elapsed().as_secs_f64());
    }
    DATA.mark_complete(dir, LAYOUT);
}

/// The entries of a base.tar in pg_basebackup's order.
fn write_base_tar(path: &Path, dataset: Dataset) -> io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, File::create(path)?));
    let mut rng = Rng(0x5eed_0000 + dataset as u64);
    let label = "START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\n\
                 CHECKPOINT LOCATION: 0/7000060\nBACKUP METHOD: streamed\n\
                 BACKUP FROM: primary\nSTART TIME: 2026-11-25 13:08:37 UTC\n\
                 LABEL: base_backup\nSTART TIMELINE: 1\n";
    append_bytes(&mut tar, "backup_label", label.as_bytes())?;
    append_bytes(&mut tar, "tablespace_map", b"")?;
    for d in ["pg_stat/", "pg_notify/"] {
        append_dir(&mut tar, d)?;
    }
    append_bytes(&mut tar, "PG_VERSION", b"15\n")?;
    append_dir(&mut tar, "global/")?;
    catalog_files(&mut tar, "global", 60, &mut rng)?;
    append_dir(&mut tar, "base/")?;
    for db in ["1", "4", "5", "16384"] {
        let base = format!("base/{db}");
        append_dir(&mut tar, &format!("{base}/"))?;
        append_bytes(&mut tar, &format!("{base}/PG_VERSION"), b"15\n")?;
        catalog_files(&mut tar, &base, 300, &mut rng)?;
    }
    match dataset {
        Dataset::Pgbench => {
            let rows: u64 = 4_000_000;
            let heap_pages = rows.div_ceil(ACCOUNTS_PER_PAGE);
            append_pages(&mut tar, "base/16384/16397", heap_pages, accounts_page)?;
            let index_pages = rows.div_ceil(INDEX_PER_PAGE);
            append_pages(
                &mut tar,
                "base/16384/16404",
                index_pages,
                accounts_pkey_page,
            )?;
        }
        Dataset::Md5 => {
            let rows: u64 = 9_000_000;
            let pages = rows.div_ceil(MD5_PER_PAGE);
            let mut rng = Rng(42);
            append_pages(&mut tar, "base/16384/16390", pages, |blk, page| {
                md5_page(blk, page, &mut rng)
            })?;
        }
    }
    for d in [
        "pg_snapshots/",
        "pg_wal/",
        "./pg_wal/archive_status/",
        "pg_serial/",
        "pg_twophase/",
    ] {
        append_dir(&mut tar, d)?;
    }
    append_bytes(
        &mut tar,
        "postgresql.auto.conf",
        b"# Do not edit this file manually!\n",
    )?;
    let mut control = vec![0u8; PAGE];
    control[..8].copy_from_slice(&7_311_234_567_890_123_456u64.to_le_bytes());
    append_bytes(&mut tar, "global/pg_control", &control)?;
    tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    // Raw name: pg_basebackup writes `./pg_wal/archive_status/` as is.
    let old = header.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.uname[..4].copy_from_slice(b"root");
        ustar.gname[..4].copy_from_slice(b"root");
    }
    header.set_cksum();
    header
}

type Tar = tar::Builder<BufWriter<File>>;

fn append_dir(tar: &mut Tar, name: &str) -> io::Result<()> {
    tar.append(
        &header(name, tar::EntryType::Directory, 0, 0o700),
        io::empty(),
    )
}

fn append_bytes(tar: &mut Tar, name: &str, data: &[u8]) -> io::Result<()> {
    let h = header(name, tar::EntryType::Regular, data.len() as u64, 0o600);
    tar.append(&h, data)
}

fn append_pages(
    tar: &mut Tar,
    name: &str,
    pages: u64,
    fill: impl FnMut(u64, &mut [u8]),
) -> io::Result<()> {
    let h = header(name, tar::EntryType::Regular, pages * PAGE as u64, 0o600);
    let source = PageSource {
        next: 0,
        pages,
        page: vec![0; PAGE],
        pos: PAGE,
        fill,
    };
    tar.append(&h, source)
}

/// Generates a relation file page by page.
struct PageSource<F> {
    next: u64,
    pages: u64,
    page: Vec<u8>,
    pos: usize,
    fill: F,
}

impl<F: FnMut(u64, &mut [u8])> Read for PageSource<F> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == PAGE {
            if self.next == self.pages {
                return Ok(0);
            }
            self.page.fill(0);
            (self.fill)(self.next, &mut self.page);
            self.next += 1;
            self.pos = 0;
        }
        let n = out.len().min(PAGE - self.pos);
        out[..n].copy_from_slice(&self.page[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// About `count` catalog-like relations: a third empty, the rest 1-14 pages
/// half full of names and oids, with an `_fsm` now and then.
fn catalog_files(tar: &mut Tar, dir: &str, count: u32, rng: &mut Rng) -> io::Result<()> {
    for i in 0..count {
        let relfilenode = 1200 + i * 7;
        let name = format!("{dir}/{relfilenode}");
        if i % 3 == 0 {
            append_bytes(tar, &name, b"")?;
            continue;
        }
        let pages = 1 + rng.below(if i % 10 == 1 { 14 } else { 2 });
        let seed = rng.next();
        append_pages(tar, &name, pages, |blk, page| catalog_page(blk, page, seed))?;
        if i % 5 == 1 {
            append_pages(tar, &format!("{name}_fsm"), 3, |_, page| {
                page[8..24].copy_from_slice(&[0xff; 16])
            })?;
        }
    }
    Ok(())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The 24-byte page header, then line pointers for `count` tuples of `len`
/// bytes (MAXALIGN'ed to `stride`) placed from `upper_end` down. Returns the
/// tuples' offsets.
fn page_layout(
    page: &mut [u8],
    blk: u64,
    count: usize,
    len: usize,
    stride: usize,
    upper_end: usize,
) -> Vec<usize> {
    let lsn = 0x1_0000_0000u64 + blk * 0x2100;
    page[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
    page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
    let lower = 24 + 4 * count;
    let upper = upper_end - count * stride;
    page[12..14].copy_from_slice(&(lower as u16).to_le_bytes());
    page[14..16].copy_from_slice(&(upper as u16).to_le_bytes());
    page[16..18].copy_from_slice(&(upper_end as u16).to_le_bytes());
    page[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
    (0..count)
        .map(|i| {
            let off = upper_end - (i + 1) * stride;
            let lp = off as u32 | (1 << 15) | ((len as u32) << 17);
            page[24 + 4 * i..28 + 4 * i].copy_from_slice(&lp.to_le_bytes());
            off
        })
        .collect()
}

/// HeapTupleHeader: xmin, xmax, cid, ctid, infomask2 (natts), infomask, hoff.
fn tuple_header(page: &mut [u8], off: usize, xmin: u32, blk: u64, item: usize, natts: u16) {
    let t = &mut page[off..off + 24];
    t[0..4].copy_from_slice(&xmin.to_le_bytes());
    t[12..14].copy_from_slice(&((blk >> 16) as u16).to_le_bytes());
    t[14..16].copy_from_slice(&(blk as u16).to_le_bytes());
    t[16..18].copy_from_slice(&(item as u16 + 1).to_le_bytes());
    t[18..20].copy_from_slice(&natts.to_le_bytes());
    t[20..22].copy_from_slice(&0x0902u16.to_le_bytes());
    t[22] = 24;
}

const ACCOUNTS_PER_PAGE: u64 = 61;

/// pgbench_accounts: (aid int, bid int, abalance int, filler char(84)).
fn accounts_page(blk: u64, page: &mut [u8]) {
    let offsets = page_layout(page, blk, ACCOUNTS_PER_PAGE as usize, 121, 128, PAGE);
    for (i, off) in offsets.into_iter().enumerate() {
        tuple_header(page, off, 740, blk, i, 4);
        let aid = blk * ACCOUNTS_PER_PAGE + i as u64 + 1;
        let d = &mut page[off + 24..off + 121];
        d[0..4].copy_from_slice(&(aid as u32).to_le_bytes());
        d[4..8].copy_from_slice(&(((aid - 1) / 100_000 + 1) as u32).to_le_bytes());
        d[12] = ((85 << 1) | 1) as u8;
        d[13..97].fill(b' ');
    }
}

const INDEX_PER_PAGE: u64 = 407;

/// pgbench_accounts_pkey leaf pages: (ctid, t_info, aid) items.
fn accounts_pkey_page(blk: u64, page: &mut [u8]) {
    let special = PAGE - 16;
    let offsets = page_layout(page, blk, INDEX_PER_PAGE as usize, 16, 16, special);
    page[special..special + 4].copy_from_slice(&(blk as u32).to_le_bytes());
    page[special + 4..special + 8].copy_from_slice(&(blk as u32 + 2).to_le_bytes());
    page[special + 12..special + 14].copy_from_slice(&1u16.to_le_bytes());
    page[special + 14..special + 16].copy_from_slice(&0xff0cu16.to_le_bytes());
    for (i, off) in offsets.into_iter().enumerate() {
        let key = blk * INDEX_PER_PAGE + i as u64 + 1;
        let (hblk, hoff) = (
            (key - 1) / ACCOUNTS_PER_PAGE,
            (key - 1) % ACCOUNTS_PER_PAGE + 1,
        );
        let t = &mut page[off..off + 16];
        t[0..2].copy_from_slice(&((hblk >> 16) as u16).to_le_bytes());
        t[2..4].copy_from_slice(&(hblk as u16).to_le_bytes());
        t[4..6].copy_from_slice(&(hoff as u16).to_le_bytes());
        t[6..8].copy_from_slice(&16u16.to_le_bytes());
        t[8..12].copy_from_slice(&(key as u32).to_le_bytes());
    }
}

const MD5_PER_PAGE: u64 = 113;

/// (id int, r bigint, t text): r random, t a random md5 in hex.
fn md5_page(blk: u64, page: &mut [u8], rng: &mut Rng) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let offsets = page_layout(page, blk, MD5_PER_PAGE as usize, 69, 72, PAGE);
    for (i, off) in offsets.into_iter().enumerate() {
        tuple_header(page, off, 741, blk, i, 3);
        let d = &mut page[off + 24..off + 69];
        let id = blk * MD5_PER_PAGE + i as u64 + 1;
        d[0..4].copy_from_slice(&(id as u32).to_le_bytes());
        d[4..12].copy_from_slice(&rng.next().to_le_bytes());
        d[12] = ((33 << 1) | 1) as u8;
        let (a, b) = (rng.next(), rng.next());
        for (j, byte) in d[13..45].iter_mut().enumerate() {
            let word = if j < 16 { a } else { b };
            *byte = HEX[((word >> ((j % 16) * 4)) & 0xf) as usize];
        }
    }
}

/// A catalog page half full of name-like text and oids.
fn catalog_page(blk: u64, page: &mut [u8], seed: u64) {
    const WORDS: [&[u8]; 8] = [
        b"pg_attribute",
        b"relname",
        b"pg_catalog",
        b"information_schema",
        b"attnum",
        b"pg_toast",
        b"int4",
        b"oid_ops",
    ];
    let offsets = page_layout(page, blk, 28, 140, 144, PAGE);
    let mut rng = Rng(seed ^ (blk + 1).wrapping_mul(0x9e37_79b9));
    for (i, off) in offsets.into_iter().enumerate() {
        tuple_header(page, off, 1, blk, i, 8);
        let d = &mut page[off + 24..off + 140];
        d[0..4].copy_from_slice(&(1200 + rng.below(20_000) as u32).to_le_bytes());
        let mut at = 8;
        while at + 20 < d.len() {
            let word = WORDS[rng.below(WORDS.len() as u64) as usize];
            d[at..at + word.len()].copy_from_slice(word);
            at += 24;
        }
    }
}

// ---------------------------------------------------------------------------
// Machine and process facts

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// User + system time of this process and its waited-for children.
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    // Fields 14-17 of the man page: utime stime cutime cstime (clock ticks).
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn machine() -> String {
    let fs_type = Command::new("stat")
        .args(["-f", "-c", "%T", "/tmp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{}, /tmp on {fs_type}", common::machine())
}
