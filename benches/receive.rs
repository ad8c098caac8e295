//! Benchmark: archiving through the receiver against the tutorial's shell
//! command, over the same loopback sshd, in the same run.
//!
//! 1,000 gzip'ed 16 MiB segments shaped like busy WAL (the deep bench's
//! generator: pgbench-like records, one page in six a full-page image,
//! about 4:1; each with its own valid long page header, so the receiver
//! verifies every one) are sent one ssh login each, as archive_command
//! does, round-robin between three contenders:
//! - `receiver`: `ssh KEY 'put-wal NAME.gz' < FILE`, the key forced to
//!   `walwarden receive` (verified, part file, fsync, rename-no-replace,
//!   fsync of the folder);
//! - `tutorial`: the tutorial's gzip archive_command on the backup server's
//!   side: `set -e; test ! -f F; cat > F.part; gzip -t F.part; sync F.part;
//!   mv F.part F`;
//! - `cat+mv`: the bare `cat > F.part && mv F.part F`.
//!
//! CPU: the receiver runs under sshd, so its CPU is measured apart: the
//! same binary run directly (stdin from the file, as sshd would give it)
//! on a sample of segments, against `walwarden check --deep` on a root
//! holding one of these segments (both the whole process: start, config,
//! verification), and check --deep's marginal cost per segment over the
//! sample. CPU is user + system of waited-for children (/proc/self/stat).
//!
//! Storing alone is measured too: `dd conv=fsync`, one process that copies
//! stdin to a new file and fsyncs it, what the receiver does minus the
//! verification.
//!
//! Run with `cargo bench --bench receive` as root or as a user sshd lets in
//! (see benches/README.md). Environment: `WALWARDEN_BENCH_DIR` (default
//! /tmp/walwarden-bench-receive; never under /var/lib/postgresql),
//! `WALWARDEN_BENCH_SEGMENTS` (1000), `WALWARDEN_BENCH_CPU_SAMPLE` (100),
//! `WALWARDEN_BENCH_ONLY=cpu` (skip the ssh runs).
//! Not a test: nothing asserts on time.

mod common;
#[allow(dead_code)]
#[path = "../tests/support/sshd.rs"]
mod sshd;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use walwarden::demo::Cluster;
use walwarden::ops::setup::PublicKey;
use walwarden::ops::setup::receiver_lines::{ForcedCommand, authorized_keys_line};

const WALWARDEN: &str = env!("CARGO_BIN_EXE_walwarden");
const SEG_SIZE: u32 = 16 << 20;
const PAGE: usize = 8192;
const SYSTEM_IDENTIFIER: u64 = 7_311_000_000_000_000_013;
const FIRST_SEGMENT: u64 = 0x1_00;
const TEMPLATES: usize = 8;
const LAYOUT: &str = "walwarden receive bench v1: gzip -9 16 MiB busy segments from 8 templates\n";
const DATA: common::Reusable = common::Reusable {
    complete: ".walwarden-bench-receive-complete",
    owner: ".walwarden-bench-receive-owned",
    env_var: "WALWARDEN_BENCH_DIR",
    bench: "receive",
};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn main() {
    let dir = common::bench_dir("WALWARDEN_BENCH_DIR", "/tmp/walwarden-bench-receive");
    let count = env_number("WALWARDEN_BENCH_SEGMENTS", 1000);
    let sample = env_number("WALWARDEN_BENCH_CPU_SAMPLE", 100).min(count);
    let source = dir.join("segments");
    let layout = format!("{LAYOUT}{count} segments\n");
    if !DATA.reuse_or_claim(&dir, &layout) {
        let _ = fs::remove_dir_all(&source);
        fs::create_dir_all(&source).expect("cannot create the segments folder");
        let started = Instant::now();
        build(&source, count);
        println!(
            "built {count} segments in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        DATA.mark_complete(&dir, &layout);
    }
    let mut segments: Vec<PathBuf> = fs::read_dir(&source)
        .expect("read the segments")
        .map(|e| e.expect("entry").path())
        .collect();
    segments.sort();
    let bytes: u64 = segments
        .iter()
        .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!("machine: {}", common::machine());
    println!(
        "segments: {} of 16 MiB, {:.2} GiB gzip'ed ({:.1} MiB each, {:.1}:1)",
        segments.len(),
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / segments.len() as f64 / (1u64 << 20) as f64,
        segments.len() as f64 * SEG_SIZE as f64 / bytes as f64
    );
    println!("load average before: {}", loadavg());
    if std::env::var("WALWARDEN_BENCH_ONLY").is_ok_and(|v| v == "cpu") {
        cpu(&dir, &segments[..sample]);
        return;
    }

    // Fresh destinations for each run; the sources are reused.
    let run = dir.join("run");
    let _ = fs::remove_dir_all(&run);
    let receiver_root = run.join("receiver");
    let tutorial_wal = run.join("tutorial/wal");
    let bare_wal = run.join("bare/wal");
    for folder in [
        receiver_root.join("bench/wal"),
        receiver_root.join("bench/base"),
        tutorial_wal.clone(),
        bare_wal.clone(),
    ] {
        fs::create_dir_all(folder).expect("create a destination");
    }

    let sshd = sshd::TestSshd::start();
    // A second key, forced to the receiver, beside the server's plain one.
    let forced_key = sshd::keygen(sshd.tmp.path(), "receiver_ed25519");
    let public = PublicKey::parse(
        &fs::read_to_string(forced_key.with_extension("pub")).expect("read the key"),
        "receiver_ed25519.pub",
    )
    .expect("parse the key");
    let line = authorized_keys_line(
        &public,
        &ForcedCommand {
            program: WALWARDEN.into(),
            root: receiver_root.clone(),
            client: "bench".into(),
            config: Some("/dev/null".into()),
        },
    )
    .expect("the forced command line");
    fs::OpenOptions::new()
        .append(true)
        .open(sshd.tmp.path().join("authorized_keys"))
        .and_then(|mut f| writeln!(f, "{line}"))
        .expect("authorize the receiver's key");
    let ssh = |key: &Path| -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", sshd.known_hosts.display()))
            .args(["-p", &sshd.port.to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user));
        command
    };

    let command_for = |which: usize, name: &str| -> Command {
        match which {
            0 => {
                let mut c = ssh(&forced_key);
                c.arg(format!("put-wal {name}"));
                c
            }
            1 => {
                let f = tutorial_wal.join(name);
                let f = f.display();
                let mut c = ssh(&sshd.client_key);
                c.arg(format!(
                    "set -e; test ! -f {f}; cat > {f}.part; gzip -t {f}.part; sync {f}.part; mv {f}.part {f}"
                ));
                c
            }
            _ => {
                let f = bare_wal.join(name);
                let f = f.display();
                let mut c = ssh(&sshd.client_key);
                c.arg(format!("cat > {f}.part && mv {f}.part {f}"));
                c
            }
        }
    };

    let labels = [
        "receiver",
        "tutorial (test, cat, gzip -t, sync, mv)",
        "cat > part && mv",
    ];
    let mut totals = [Duration::ZERO; 3];
    let started = Instant::now();
    for (index, path) in segments.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a segment name");
        // Round-robin order, so drifting load falls on every contender alike.
        for turn in 0..3 {
            let which = (index + turn) % 3;
            let input = File::open(path).expect("open a segment");
            let t0 = Instant::now();
            let out = command_for(which, name)
                .stdin(Stdio::from(input))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("run ssh");
            totals[which] += t0.elapsed();
            assert!(
                out.status.success(),
                "{} failed on {name}: {}",
                labels[which],
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if (index + 1) % 100 == 0 {
            println!(
                "  {:>4} segments after {:>4.0} s: receiver {:.1} s, tutorial {:.1} s, cat+mv {:.1} s (load {})",
                index + 1,
                started.elapsed().as_secs_f64(),
                totals[0].as_secs_f64(),
                totals[1].as_secs_f64(),
                totals[2].as_secs_f64(),
                loadavg()
            );
        }
    }
    // Everything arrived, byte for byte, under its name.
    let received = fs::read_dir(receiver_root.join("bench/wal")).map_or(0, |d| d.count());
    assert_eq!(
        received,
        segments.len(),
        "the receiver stored every segment once"
    );
    for path in segments.iter().take(3) {
        let name = path.file_name().expect("a name");
        assert_eq!(
            fs::read(receiver_root.join("bench/wal").join(name)).ok(),
            fs::read(path).ok()
        );
    }
    drop(sshd);

    let n = segments.len() as f64;
    println!("\n| contender | total | per segment |\n|---|---:|---:|");
    for (label, total) in labels.iter().zip(totals) {
        println!(
            "| {label} | {:.1} s | {:.1} ms |",
            total.as_secs_f64(),
            total.as_secs_f64() * 1000.0 / n
        );
    }
    println!(
        "ratio receiver / tutorial = {:.3}; receiver / cat+mv = {:.3} (goal <= 1.15)",
        totals[0].as_secs_f64() / totals[1].as_secs_f64(),
        totals[0].as_secs_f64() / totals[2].as_secs_f64()
    );
    let _ = fs::remove_dir_all(&run);

    cpu(&dir, &segments[..sample]);
    println!("load average after: {}", loadavg());
}

/// The receiver's CPU per segment (run as sshd runs it, without ssh)
/// against `walwarden check --deep` on one segment and per segment.
fn cpu(dir: &Path, sample: &[PathBuf]) {
    let scratch = dir.join("cpu");
    let _ = fs::remove_dir_all(&scratch);
    let root = scratch.join("root");
    for folder in ["bench/wal", "bench/base"] {
        fs::create_dir_all(root.join(folder)).expect("create the CPU root");
    }
    let (_, before) = cpu_times();
    for path in sample {
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        let status = Command::new(WALWARDEN)
            .args(["receive", "--root"])
            .arg(&root)
            .args(["--client", "bench", "--config", "/dev/null"])
            .env("SSH_ORIGINAL_COMMAND", format!("put-wal {name}"))
            .stdin(File::open(path).expect("open a segment"))
            .status()
            .expect("run the receiver");
        assert!(status.success(), "the receiver refused {name}");
    }
    let (_, after) = cpu_times();
    let receiver_ms = (after - before) * 1000.0 / sample.len() as f64;

    // Storing alone: copy stdin to a new file and fsync it, one process.
    let stored = scratch.join("dd");
    fs::create_dir_all(&stored).expect("create the dd folder");
    let (_, before) = cpu_times();
    for path in sample {
        let status = Command::new("dd")
            .arg(format!(
                "of={}",
                stored.join(path.file_name().expect("a name")).display()
            ))
            .args(["bs=256K", "conv=fsync", "status=none"])
            .stdin(File::open(path).expect("open a segment"))
            .status()
            .expect("run dd");
        assert!(status.success(), "dd failed");
    }
    let (_, after) = cpu_times();
    let dd_ms = (after - before) * 1000.0 / sample.len() as f64;

    // check --deep over one segment, a fresh cache each time (the whole process).
    let one = scratch.join("one");
    fs::create_dir_all(one.join("bench/wal")).expect("create the one-segment root");
    let first = &sample[0];
    fs::copy(
        first,
        one.join("bench/wal")
            .join(first.file_name().expect("a name")),
    )
    .expect("copy a segment");
    let runs = 10;
    let (_, before) = cpu_times();
    for run in 0..runs {
        deep(&one, &scratch.join(format!("cache-one-{run}")));
    }
    let (_, after) = cpu_times();
    let deep_one_ms = (after - before) * 1000.0 / runs as f64;

    // check --deep over the whole sample: its cost per segment.
    let (_, before) = cpu_times();
    deep(&root, &scratch.join("cache-all"));
    let (_, after) = cpu_times();
    let deep_each_ms = (after - before) * 1000.0 / sample.len() as f64;

    println!("\nCPU (user + system), {} segments:", sample.len());
    println!("| what | CPU |\n|---|---:|");
    println!("| walwarden receive, one segment (whole process) | {receiver_ms:.1} ms |");
    println!("| dd conv=fsync, one segment (storing alone) | {dd_ms:.1} ms |");
    println!(
        "| receiver minus storing: the verification | {:.1} ms |",
        receiver_ms - dd_ms
    );
    println!(
        "| walwarden check --deep, a root of one segment (whole process) | {deep_one_ms:.1} ms |"
    );
    println!(
        "| walwarden check --deep, per segment over {} | {deep_each_ms:.1} ms |",
        sample.len()
    );
    println!(
        "ratio receiver / check --deep on one = {:.2}; receiver / deep per segment = {:.2}; verification / check --deep on one = {:.2} (goal <= 1)",
        receiver_ms / deep_one_ms,
        receiver_ms / deep_each_ms,
        (receiver_ms - dd_ms) / deep_one_ms
    );
    let _ = fs::remove_dir_all(&scratch);
}

fn deep(root: &Path, cache: &Path) {
    let status = Command::new(WALWARDEN)
        .args([
            "--config",
            "/dev/null",
            "check",
            "--deep",
            "--json",
            "--root",
        ])
        .arg(root)
        .env("XDG_CACHE_HOME", cache)
        .env("HOME", cache)
        .stdout(Stdio::null())
        .status()
        .expect("run check --deep");
    // Exit 2: no base backup is critical; the segments are read all the same.
    assert!(status.code().is_some_and(|c| c <= 3), "check --deep failed");
}

// ---------------------------------------------------------------------------
// The segments (the deep bench's generator)

fn build(dir: &Path, count: usize) {
    let cluster = Cluster::new(SYSTEM_IDENTIFIER, SEG_SIZE);
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
    let mut rng = Rng(42);
    for number in 0..count as u64 {
        let id = cluster.id(1, FIRST_SEGMENT + number);
        let mut first = vec![0u8; PAGE];
        fill_page(&mut first, 0, &mut rng);
        first[..40].copy_from_slice(&cluster.segment_header(id));
        let (body, body_crc) = &bodies[number as usize % TEMPLATES];
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
        let path = dir.join(format!("{}.gz", id.file_name(SEG_SIZE)));
        File::create(&path)
            .and_then(|mut f| f.write_all(&file))
            .expect("cannot write a segment");
        if (number + 1) % 200 == 0 {
            println!("  built {} segments", number + 1);
        }
    }
    let first = dir.join(format!(
        "{}.gz",
        cluster.id(1, FIRST_SEGMENT).file_name(SEG_SIZE)
    ));
    let status = Command::new("gzip").arg("-t").arg(&first).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "gzip -t rejects {}",
        first.display()
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

/// One WAL page: a short header, then records until the page is full; one
/// page in six a full-page image of random bytes.
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
    let tick = 100.0; // USER_HZ on Linux
    let at = |i: usize| fields.get(i).copied().unwrap_or(0) as f64 / tick;
    (at(11) + at(12), at(13) + at(14))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
