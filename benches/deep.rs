//! Benchmark: deep verification (`deep::verify_client`, what `check --deep`
//! runs) of one client's archive of more than 2 GiB of gzip'ed 16 MiB WAL
//! segments, against `gzip -t` over the same files one after another, in the
//! same run. The goal is at most 0.3 of gzip's time, with bounded memory.
//!
//! The archive is built once into `WALWARDEN_BENCH_DIR` (default
//! /tmp/walwarden-bench-deep; never under /var/lib/postgresql) and reused
//! while its marker file holds the current layout. Segments look like busy
//! WAL to a compressor: 8 KiB pages with short page headers, records with
//! 24-byte headers, tuple-like payloads (counters, blank-padded text,
//! repeated column values) and some full-page images of random bytes, about
//! 4:1 with gzip -9, like real WAL. Every segment starts with its own valid
//! long page header (system identifier, timeline, page address of its name,
//! segment size), so verification finds nothing wrong.
//!
//! Building 2 GiB of gzip -9 output would take minutes: instead 8 template
//! bodies (pages 2..2048) are deflated once, and each segment is its own
//! first page deflated with a full flush (byte-aligned, no back-references
//! across it) followed by one of those bodies, with the CRC32 combined. The
//! result is an ordinary single-member gzip file that `gzip -t` accepts.
//!
//! Contenders, warm page cache (one untimed warm-up each), alternating:
//! - `walwarden deep`: catalog scan outside the timer, then
//!   `deep::verify_client` with a fresh in-memory cache (every file read);
//! - `gzip -t`: one `gzip -t` process given every file of the client (both
//!   base tarballs and all segments) on its command line, so it tests them
//!   one after another, spawn to wait.
//!
//! Peak memory: `VmHWM` of a fresh child process that verifies once
//! (`--verify-once ROOT`), so building and the other contender do not count.
//!
//! Run with `cargo bench --bench deep` (see benches/README.md).
//! Environment: `WALWARDEN_BENCH_DIR`, `WALWARDEN_BENCH_RUNS` (default 3).
//! `deep-<hash> --once walwarden|gzip ROOT` times one run (for `perf record`).
//! Not a test: nothing asserts on time.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use walwarden::archive::catalog::{self, Client, ScanOptions};
use walwarden::checks::deep::{self, DeepCache};
use walwarden::demo::Cluster;

const SEG_SIZE: u32 = 16 << 20;
const PAGE: usize = 8192;
const SYSTEM_IDENTIFIER: u64 = 7_311_000_000_000_000_001;
const FIRST_SEGMENT: u64 = 0x2_00;
/// The archive holds at least this many compressed bytes of segments.
const TARGET_BYTES: u64 = 2 << 30;
const TEMPLATES: usize = 8;
const LAYOUT: &str = "walwarden deep bench v1: 1 client, >= 2 GiB of gzip -9 16 MiB segments \
                      (8 template bodies, ~4:1), base backup at segment 0x200\n";
const DATA: common::Reusable = common::Reusable {
    complete: ".walwarden-bench-deep-complete",
    owner: ".walwarden-bench-deep-owned",
    env_var: "WALWARDEN_BENCH_DIR",
    bench: "deep",
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--build") => return build(Path::new(&args[1])),
        Some("--verify-once") => return verify_once(Path::new(&args[1])),
        Some("--once") => {
            let root = Path::new(&args[2]);
            let took = match args[1].as_str() {
                "gzip" => gzip_t(&gzip_files(&client(root))),
                _ => walwarden_deep(root).0,
            };
            println!("{} {:.3} s", args[1], took.as_secs_f64());
            return;
        }
        _ => {} // `cargo bench` passes `--bench`.
    }
    let dir = common::bench_dir("WALWARDEN_BENCH_DIR", "/tmp/walwarden-bench-deep");
    let root = dir.join("deep-root");
    ensure_archive(&dir, &root);
    let runs: usize = std::env::var("WALWARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);

    let client = client(&root);
    let files = gzip_files(&client);
    let compressed: u64 = files
        .iter()
        .map(|f| fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let segments = client.wal.segments.len() as u64;
    println!("machine: {}", common::machine());
    println!(
        "archive: {} ({segments} segments of 16 MiB = {:.2} GiB unpacked, {} files, {:.2} GiB compressed, ratio {:.1}:1)",
        root.display(),
        (segments * SEG_SIZE as u64) as f64 / (1u64 << 30) as f64,
        files.len(),
        compressed as f64 / (1u64 << 30) as f64,
        (segments * SEG_SIZE as u64) as f64 / compressed as f64
    );
    println!("load average before: {}", loadavg());

    // Warm-up: fills the page cache and checks what each side says; not counted.
    let (_, report) = walwarden_deep(&root);
    assert!(
        report.problems.is_empty(),
        "the bench archive must verify clean: {:#?}",
        report.problems
    );
    assert_eq!(report.files_checked, segments + 2, "every file read");
    gzip_t(&files);
    println!(
        "warm-up: walwarden checked {} files, verified through {}",
        report.files_checked,
        report.verified_through.as_deref().unwrap_or("-")
    );

    let mut walwarden = Vec::new();
    let mut gzip = Vec::new();
    let mut walwarden_cpu = Vec::new();
    let mut gzip_cpu = Vec::new();
    for run in 0..runs {
        let (self_before, _) = cpu_times();
        let (took, _) = walwarden_deep(&root);
        let (self_after, children_before) = cpu_times();
        let gzip_took = gzip_t(&files);
        let (_, children_after) = cpu_times();
        walwarden.push(took);
        gzip.push(gzip_took);
        walwarden_cpu.push(self_after - self_before);
        gzip_cpu.push(children_after - children_before);
        println!(
            "run {}: walwarden {:.3} s (cpu {:.2} s), gzip -t {:.3} s (cpu {:.2} s), load {}",
            run + 1,
            took.as_secs_f64(),
            self_after - self_before,
            gzip_took.as_secs_f64(),
            children_after - children_before,
            loadavg()
        );
    }
    let hwm = verify_once_child(&root);
    let (w, g) = (median(&walwarden), median(&gzip));
    println!("\n{runs} runs, warm cache:");
    println!("| contender | median | min | max | CPU median |");
    println!("|---|---:|---:|---:|---:|");
    for (name, times, cpu) in [
        ("walwarden deep (in-process)", &walwarden, &walwarden_cpu),
        ("gzip -t FILES (one process)", &gzip, &gzip_cpu),
    ] {
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.2} s |",
            median(times).as_secs_f64(),
            times.iter().min().map_or(0.0, Duration::as_secs_f64),
            times.iter().max().map_or(0.0, Duration::as_secs_f64),
            median_f64(cpu)
        );
    }
    println!(
        "ratio median(walwarden) / median(gzip -t) = {:.3} (goal <= 0.3)",
        w.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "throughput: walwarden {:.0} MB/s, gzip -t {:.0} MB/s of unpacked WAL",
        (segments * SEG_SIZE as u64) as f64 / 1e6 / w.as_secs_f64(),
        (segments * SEG_SIZE as u64) as f64 / 1e6 / g.as_secs_f64()
    );
    println!(
        "peak memory of one verification in a fresh process (VmHWM): {}",
        hwm.map_or("unknown".into(), |k| format!(
            "{:.1} MiB ({k} kB)",
            k as f64 / 1024.0
        ))
    );
    println!("load average after: {}", loadavg());
}

// ---------------------------------------------------------------------------
// The contenders

fn client(root: &Path) -> Client {
    let catalog = catalog::scan(root, &ScanOptions::default()).expect("scan failed");
    catalog
        .clients
        .into_iter()
        .next()
        .expect("the bench root has one client")
}

/// Scans (untimed), then deep-verifies with a fresh cache (timed).
fn walwarden_deep(root: &Path) -> (Duration, deep::DeepReport) {
    let client = client(root);
    let mut cache = DeepCache::load(None);
    let started = Instant::now();
    let report = deep::verify_client(&client, &mut cache, SystemTime::now(), &mut |_, _| {});
    (started.elapsed(), report)
}

/// Both tarballs and every segment, in the catalog's order.
fn gzip_files(client: &Client) -> Vec<PathBuf> {
    let mut files = vec![
        client.path.join("base/base.tar.gz"),
        client.path.join("base/pg_wal.tar.gz"),
    ];
    files.extend(
        client
            .wal
            .segments
            .iter()
            .map(|s| client.path.join("wal").join(s.file_name())),
    );
    files
}

fn gzip_t(files: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let status = Command::new("gzip")
        .arg("-t")
        .args(files)
        .stdin(Stdio::null())
        .status()
        .expect("cannot run gzip");
    let took = started.elapsed();
    assert!(status.success(), "gzip -t failed: {status}");
    took
}

fn verify_once(root: &Path) {
    let (took, report) = walwarden_deep(root);
    let hwm = proc_status_kib("VmHWM:");
    println!(
        "checked {} in {:.3} s\nVmHWM {}",
        report.files_checked,
        took.as_secs_f64(),
        hwm.unwrap_or(0)
    );
}

fn verify_once_child(root: &Path) -> Option<u64> {
    let out = Command::new(std::env::current_exe().ok()?)
        .arg("--verify-once")
        .arg(root)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM "))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&v| v > 0)
}

// ---------------------------------------------------------------------------
// The archive

fn ensure_archive(dir: &Path, root: &Path) {
    if DATA.reuse_or_claim(dir, LAYOUT) {
        return;
    }
    if root.exists() {
        println!("removing the incomplete archive {}", root.display());
        fs::remove_dir_all(root).expect("cannot remove the old archive");
    }
    fs::create_dir_all(root).expect("cannot create the bench dir");
    println!("building the archive in {} (once)", root.display());
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().expect("own path"))
        .arg("--build")
        .arg(root)
        .status()
        .expect("cannot re-run the bench to build the archive");
    assert!(status.success(), "building the archive failed: {status}");
    let _ = Command::new("sync").status();
    println!("built in {:.1} s", started.elapsed().as_secs_f64());
    DATA.mark_complete(dir, LAYOUT);
}

/// Child: ROOT/client01/{base,wal}.
fn build(root: &Path) {
    let cluster = Cluster::new(SYSTEM_IDENTIFIER, SEG_SIZE);
    let client_dir = root.join("client01");
    let wal = client_dir.join("wal");
    let taken = SystemTime::now() - Duration::from_secs(86_400);
    cluster
        .write_base_backup(
            &client_dir,
            cluster.id(1, FIRST_SEGMENT),
            cluster.id(1, FIRST_SEGMENT + 1),
            taken,
        )
        .expect("cannot write the base backup");

    // Pages 2..2048 of a segment, deflated once per template, in parallel.
    let bodies: Vec<(Vec<u8>, Crc)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..TEMPLATES)
            .map(|t| {
                scope.spawn(move || {
                    let mut body = vec![0u8; SEG_SIZE as usize - PAGE];
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1234_5678));
                    for (index, page) in body.chunks_mut(PAGE).enumerate() {
                        fill_page(page, index as u64 + 1, &mut rng);
                    }
                    let mut crc = Crc::new();
                    crc.update(&body);
                    (deflate(&body, FlushCompress::Finish), crc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("template thread"))
            .collect()
    });

    let mut written = 0u64;
    let mut rng = Rng(42);
    let mut segno = FIRST_SEGMENT;
    while written < TARGET_BYTES {
        let id = cluster.id(1, segno);
        let mut first = vec![0u8; PAGE];
        fill_page(&mut first, 0, &mut rng);
        first[..40].copy_from_slice(&cluster.segment_header(id));
        let (body, body_crc) = &bodies[(segno as usize) % TEMPLATES];
        let mut crc = Crc::new();
        crc.update(&first);
        crc.combine(body_crc);
        let mut file = Vec::with_capacity(body.len() + PAGE + 32);
        // gzip header: deflate, no name, mtime 0, XFL 2 (best compression), OS 3 (Unix).
        file.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
        file.extend_from_slice(&deflate(&first, FlushCompress::Full));
        file.extend_from_slice(body);
        file.extend_from_slice(&crc.sum().to_le_bytes());
        file.extend_from_slice(&SEG_SIZE.to_le_bytes());
        let name = format!("{}.gz", id.file_name(SEG_SIZE));
        let path = wal.join(&name);
        File::create(&path)
            .and_then(|mut f| f.write_all(&file))
            .expect("cannot write a segment");
        let _ =
            walwarden::demo::set_mtime(&path, taken + Duration::from_secs(segno - FIRST_SEGMENT));
        written += file.len() as u64;
        segno += 1;
        if (segno - FIRST_SEGMENT).is_multiple_of(50) {
            println!(
                "  {} segments, {:.2} GiB",
                segno - FIRST_SEGMENT,
                written as f64 / (1u64 << 30) as f64
            );
        }
    }
    // One real gzip check of the first segment, so a bad layout fails here and not in a run.
    let first = wal.join(format!(
        "{}.gz",
        cluster.id(1, FIRST_SEGMENT).file_name(SEG_SIZE)
    ));
    let status = Command::new("gzip").arg("-t").arg(&first).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "gzip -t rejects {}",
        first.display()
    );
    println!(
        "  {} segments, {written} bytes compressed",
        segno - FIRST_SEGMENT
    );
}

/// Raw deflate at level 9: `Finish` ends the stream, `Full` ends byte-aligned
/// with the dictionary reset so another raw stream can follow.
fn deflate(data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = compress.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = compress
            .compress_vec(&data[consumed..], &mut out, flush)
            .expect("deflate");
        let all_in = compress.total_in() as usize == data.len();
        match (flush, status) {
            (FlushCompress::Finish, Status::StreamEnd) => break,
            (FlushCompress::Full, _) if all_in && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    out
}

/// One WAL page: a short header, then records until the page is full. Most
/// records are heap inserts or updates of a pgbench-like table (counters,
/// blank-padded filler); one page in six is a full-page image of random bytes.
fn fill_page(page: &mut [u8], page_no: u64, rng: &mut Rng) {
    page.fill(0);
    page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    page[2..4].copy_from_slice(&0x0005u16.to_le_bytes());
    page[4..8].copy_from_slice(&1u32.to_le_bytes());
    page[8..16].copy_from_slice(&(page_no * PAGE as u64).to_le_bytes());
    let mut at = 24;
    if rng.next().is_multiple_of(6) {
        for chunk in page[at..].chunks_mut(8) {
            let bytes = rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        return;
    }
    while at + 24 + 120 <= page.len() {
        let payload = 60 + (rng.next() % 60) as usize;
        let record = &mut page[at..at + 24 + payload];
        let xid = 10_000 + page_no as u32 * 7 + (rng.next() % 5) as u32;
        record[0..4].copy_from_slice(&((24 + payload) as u32).to_le_bytes());
        record[4..8].copy_from_slice(&xid.to_le_bytes());
        record[8..16].copy_from_slice(
            &(page_no * PAGE as u64 + at as u64)
                .saturating_sub(90)
                .to_le_bytes(),
        );
        record[16] = 0x10;
        record[17] = 10;
        record[20..24].copy_from_slice(&(rng.next() as u32).to_le_bytes());
        let data = &mut record[24..];
        let aid = (rng.next() % 5_000_000) as u32;
        data[0..4].copy_from_slice(&aid.to_le_bytes());
        data[4..8].copy_from_slice(&((aid / 100_000) + 1).to_le_bytes());
        data[8..12].copy_from_slice(&((rng.next() % 10_000) as u32).to_le_bytes());
        data[12..].fill(b' ');
        at += (24 + payload + 7) & !7;
    }
}

/// xorshift64*: deterministic, fast, good enough to defeat a compressor.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

// ---------------------------------------------------------------------------
// Measuring

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// (user + system seconds of this process, of its waited-for children), from /proc/self/stat.
fn cpu_times() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // After the command name: utime, stime, cutime, cstime are fields 12..16 (0-based from state).
    let tick = 100.0; // USER_HZ on Linux
    let at = |i: usize| fields.get(i).copied().unwrap_or(0) as f64 / tick;
    (at(11) + at(12), at(13) + at(14))
}

fn proc_status_kib(key: &str) -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
