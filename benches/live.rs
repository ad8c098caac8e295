//! Benchmark: the live dashboard under load. Arrival-to-screen latency (a
//! segment renamed into `wal/` until the first frame showing it has been
//! drawn) and frame times (update + draw) while 10,000 segments land in one
//! minute across 50 clients; then an event storm (20,000 renames as fast as
//! possible into one client, as a bulk resync does); then a backlog (20,000
//! renames landed while the loop is held, as a stopped terminal holds it, so
//! the loop meets full `MAX_BATCH` batches).
//!
//! The real path, not a copy: `RootWatcher` (notify) feeds the
//! observer thread (`catalog::spawn_observer`: the stat and reads) and then
//! an unbounded channel; `walwarden::tui::drain_batch` takes a frame's worth
//! of messages as the dashboard's loop does; observed changes go to
//! `App::update` as one `Event::Observed` (catalog.apply, refresh, rows rebuilt), and one
//! `view::draw` follows per batch, into a `TestBackend` terminal tall enough
//! (160x54) for every client's row to be on screen. A 1 s Tick and a
//! synthetic key press every 100 ms go through the same channel; the keys'
//! latency shows whether input waits behind file events. An arrival counts
//! as shown by the first frame drawn after the catalog holds its segment.
//!
//! The writer does what `demo::write_part_then_rename` does (40-byte segment header
//! to `.part`, fsync, rename; no fsync in the storm and the backlog, as rsync)
//! and notes the instants just before and after each rename.
//!
//! Reference: when `inotifywait` (Debian's inotify-tools; bench-only) is
//! installed, `inotifywait -m -r -e moved_to` watches the same root during the
//! same run and a reader thread timestamps each line as it arrives: the floor
//! any inotify-based watcher starts from.
//!
//! Run with `cargo bench --bench live` (see benches/README.md). Not a test:
//! nothing asserts on time. Goals from the issue: p99 latency < 250 ms and
//! no frame over 50 ms.
//!
//! Environment:
//! - `WALWARDEN_BENCH_LIVE_SECS` (60): how long the steady phase lasts;
//! - `WALWARDEN_BENCH_LIVE_SEGMENTS` (10000): segments landing in it;
//! - `WALWARDEN_BENCH_LIVE_STORM` (20000): renames in the storm (0 skips it);
//! - `WALWARDEN_BENCH_LIVE_BACKLOG` (20000): renames in the backlog (0 skips it);
//! - `WALWARDEN_BENCH_LIVE_DIR` (/tmp): where the temporary root is made
//!   (refused under /var/lib/postgresql; removed at the end);
//! - `WALWARDEN_BENCH_LIVE_REFERENCE=0`: skip inotifywait;
//! - `WALWARDEN_BENCH_LIVE_BACKEND=crossterm`: draw with the real backend's
//!   escape sequences into a byte counter instead of `TestBackend`;
//! - proposals, not today's loop: `WALWARDEN_BENCH_LIVE_MIN_FRAME_MS=16` (at
//!   most one frame per 16 ms) and `WALWARDEN_BENCH_LIVE_MAX_BATCH=5000`
//!   (a smaller bound on a frame's messages than `tui::MAX_BATCH`).

mod common;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::{Backend, CrosstermBackend, TestBackend};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use tokio::sync::mpsc;

use walwarden::archive::catalog::{self, ScanOptions};
use walwarden::archive::wal::RawSegmentName;
use walwarden::archive::watch::{RootWatcher, WalChange};
use walwarden::config::Config;
use walwarden::demo::{Cluster, write_part_then_rename};
use walwarden::tui::app::{App, Command as AppCommand, Event};
use walwarden::tui::{drain_batch, view};

const CLIENTS: usize = 50;
const SEG_SIZE: u32 = 16 << 20;
/// The base backup starts (and stops) here.
const BASE_SEGMENT: u64 = 0x100;
/// Segments archived before the dashboard starts (from the base backup on).
const SEEDED: u64 = 6;
/// The storm lands in this client.
const STORM_CLIENT: usize = 0;
/// The backlog lands in this one.
const BACKLOG_CLIENT: usize = 1;
/// Every client's row is on screen: header, footer, the table's top border and title row, 50 rows.
const WIDTH: u16 = 160;
const HEIGHT: u16 = 4 + CLIENTS as u16;
/// Quiet time between the steady phase and the storm, so the phases do not mix.
const SETTLE: Duration = Duration::from_secs(3);
/// How long to wait for missing arrivals once the writer is done.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const KEY_EVERY: Duration = Duration::from_millis(100);
const FRAME_GOAL: Duration = Duration::from_millis(50);
const LATENCY_GOAL: Duration = Duration::from_millis(250);

/// `WALWARDEN_BENCH_LIVE_MIN_FRAME_MS`: emulates a frame-rate cap (0, the default, is the real loop).
fn min_frame() -> Duration {
    Duration::from_millis(env_number("WALWARDEN_BENCH_LIVE_MIN_FRAME_MS", 0))
}

/// `WALWARDEN_BENCH_LIVE_MAX_BATCH`: emulates a smaller bound on a frame's
/// messages than the loop's `MAX_BATCH` (unset: the real `drain_batch`).
fn max_batch() -> Option<usize> {
    let limit = env_number("WALWARDEN_BENCH_LIVE_MAX_BATCH", 0) as usize;
    (limit > 0).then_some(limit)
}

/// `drain_batch` with another bound (the proposal measured with `max_batch`).
fn drain_at_most<T>(first: T, rx: &mut mpsc::UnboundedReceiver<T>, limit: usize) -> Vec<T> {
    let mut pending = vec![first];
    while pending.len() < limit {
        match rx.try_recv() {
            Ok(more) => pending.push(more),
            Err(_) => break,
        }
    }
    pending
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; there are no other arguments.
    let secs = env_number("WALWARDEN_BENCH_LIVE_SECS", 60).max(1);
    let segments = env_number("WALWARDEN_BENCH_LIVE_SEGMENTS", 10_000).max(1) as usize;
    let storm = env_number("WALWARDEN_BENCH_LIVE_STORM", 20_000) as usize;
    let backlog = env_number("WALWARDEN_BENCH_LIVE_BACKLOG", 20_000) as usize;
    let reference = std::env::var("WALWARDEN_BENCH_LIVE_REFERENCE").as_deref() != Ok("0");
    let crossterm = std::env::var("WALWARDEN_BENCH_LIVE_BACKEND").as_deref() == Ok("crossterm");

    let parent = bench_parent();
    let tmp = tempfile::Builder::new()
        .prefix("walwarden-live-bench-")
        .tempdir_in(&parent)
        .expect("cannot create the bench directory");
    let root = tmp.path().join("root");
    println!("machine: {}", machine());
    println!(
        "plan:    {segments} segments over {secs} s across {CLIENTS} clients, then a storm of \
         {storm} renames into one client, then a backlog of {backlog} renames landed while \
         the loop is held; terminal {WIDTH}x{HEIGHT} ({})",
        if crossterm {
            "CrosstermBackend into a byte counter"
        } else {
            "TestBackend"
        }
    );
    if let Some(limit) = max_batch() {
        println!(
            "proposal: at most {limit} messages per frame (WALWARDEN_BENCH_LIVE_MAX_BATCH); \
             the dashboard today takes up to MAX_BATCH = {}",
            walwarden::tui::MAX_BATCH
        );
    }
    if !min_frame().is_zero() {
        println!(
            "proposal: at most one frame per {} ms (WALWARDEN_BENCH_LIVE_MIN_FRAME_MS); \
             the dashboard today draws after every batch",
            min_frame().as_millis()
        );
    }
    let started = Instant::now();
    let plan = Plan::new(&root, segments, storm, backlog);
    plan.build();
    println!(
        "root:    {} ({CLIENTS} clients, base backup + {SEEDED} segments each; built in {:.1} s)",
        root.display(),
        started.elapsed().as_secs_f64()
    );

    let mut inotifywait = if reference {
        Reference::start(&root, &plan)
    } else {
        None
    };
    if reference && inotifywait.is_none() {
        println!("reference: inotifywait not found (apt-get install inotify-tools); skipped");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start tokio");
    let plan = Arc::new(plan);
    let span = Duration::from_secs(secs);
    let run = if crossterm {
        // The real backend's escape sequences, into a byte counter instead of a tty.
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let backend = CrosstermBackend::new(ByteCounter(bytes.clone()));
        let options = TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, WIDTH, HEIGHT)),
        };
        let terminal = Terminal::with_options(backend, options).expect("terminal");
        runtime.block_on(live_loop(plan.clone(), span, terminal, move |_| {
            Screen::Bytes(bytes.load(Ordering::Relaxed))
        }))
    } else {
        let terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("terminal");
        runtime.block_on(live_loop(plan.clone(), span, terminal, |b| {
            Screen::Text(screen_text(b))
        }))
    };
    runtime.shutdown_timeout(Duration::from_millis(200));
    let reference_seen = inotifywait.as_mut().map(Reference::finish);

    report(&plan, &run, reference_seen.as_deref());
    drop(tmp);
}

fn bench_parent() -> PathBuf {
    let dir = std::env::var_os("WALWARDEN_BENCH_LIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let resolved = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    if [&dir, &resolved]
        .iter()
        .any(|p| p.starts_with("/var/lib/postgresql"))
    {
        eprintln!(
            "refusing WALWARDEN_BENCH_LIVE_DIR={}: never under /var/lib/postgresql",
            dir.display()
        );
        std::process::exit(2);
    }
    fs::create_dir_all(&dir).expect("cannot create WALWARDEN_BENCH_LIVE_DIR");
    dir
}

// ---------------------------------------------------------------------------
// The root and the arrivals

/// One segment the writer lands, by its index in landing order.
struct Planned {
    client: usize,
    name: String,
    raw: RawSegmentName,
    header: [u8; 40],
}

struct Plan {
    root: PathBuf,
    clusters: Vec<Cluster>,
    /// The steady phase's segments first (round-robin over the clients), then
    /// the storm's, then the backlog's.
    arrivals: Vec<Planned>,
    steady: usize,
    storm: usize,
    /// "clientNN/NAME" to the arrival's index.
    index: HashMap<String, usize>,
}

fn client_name(client: usize) -> String {
    format!("client{:02}", client + 1)
}

impl Plan {
    fn new(root: &Path, steady: usize, storm: usize, backlog: usize) -> Plan {
        let clusters: Vec<Cluster> = (0..CLIENTS)
            .map(|c| Cluster::new(7_400_000_000_000_000_000 + c as u64, SEG_SIZE))
            .collect();
        let mut next: Vec<u64> = vec![BASE_SEGMENT + SEEDED; CLIENTS];
        let mut arrivals = Vec::with_capacity(steady + storm + backlog);
        let clients = (0..steady)
            .map(|j| j % CLIENTS)
            .chain(std::iter::repeat_n(STORM_CLIENT, storm))
            .chain(std::iter::repeat_n(BACKLOG_CLIENT, backlog));
        for client in clients {
            let id = clusters[client].id(1, next[client]);
            next[client] += 1;
            let name = id.file_name(SEG_SIZE);
            arrivals.push(Planned {
                client,
                raw: RawSegmentName::parse(&name).expect("a segment name"),
                header: clusters[client].segment_header(id),
                name,
            });
        }
        let index = arrivals
            .iter()
            .enumerate()
            .map(|(j, a)| (format!("{}/{}", client_name(a.client), a.name), j))
            .collect();
        Plan {
            root: root.to_owned(),
            clusters,
            arrivals,
            steady,
            storm,
            index,
        }
    }

    fn wal_dir(&self, client: usize) -> PathBuf {
        self.root.join(client_name(client)).join("wal")
    }

    /// Each client: a real base backup (base.tar.gz, pg_wal.tar.gz, `.backup`)
    /// and `SEEDED` segments from its start, landed over the last hour.
    fn build(&self) {
        let now = SystemTime::now();
        std::thread::scope(|scope| {
            for worker in 0..2 {
                scope.spawn(move || {
                    for c in (worker..CLIENTS).step_by(2) {
                        let cluster = &self.clusters[c];
                        let dir = self.root.join(client_name(c));
                        let start = cluster.id(1, BASE_SEGMENT);
                        cluster
                            .write_base_backup(&dir, start, start, now - Duration::from_secs(3600))
                            .expect("cannot write a base backup");
                        for k in 0..SEEDED {
                            let id = cluster.id(1, BASE_SEGMENT + k);
                            let landed = now - Duration::from_secs(600 * (SEEDED - k));
                            write_part_then_rename(
                                &self.wal_dir(c),
                                &id.file_name(SEG_SIZE),
                                &cluster.segment_header(id),
                                Some(landed),
                            )
                            .expect("cannot archive a seed segment");
                        }
                    }
                });
            }
        });
    }

    fn lookup(&self, client: &str, name: &str) -> Option<usize> {
        self.index.get(&format!("{client}/{name}")).copied()
    }
}

/// What the writer thread did, for the report.
struct Written {
    /// Just after each rename returned, by arrival index.
    renamed: Vec<Instant>,
    /// Just before each rename was called: the event happens in between.
    rename_called: Vec<Instant>,
    /// How far the steady phase's renames fell behind their schedule at worst.
    worst_lag: Duration,
    steady_start: Instant,
    storm_start: Instant,
    /// When the held loop was let go, with the backlog on disk.
    backlog_released: Option<Instant>,
}

/// The backlog phase's switch: the writer asks the loop to block (as a
/// terminal write blocks when output is stopped with Ctrl-S or a link stalls),
/// lands the backlog, then lets it go.
#[derive(Default)]
struct Hold {
    requested: AtomicBool,
    holding: AtomicBool,
}

/// Lands the steady phase's segments evenly over `span`, waits `SETTLE`, then
/// the storm's as fast as it can.
fn write_arrivals(
    plan: &Plan,
    span: Duration,
    hold: &Hold,
    tx: &mpsc::UnboundedSender<Message>,
) -> Written {
    let steady = plan.steady;
    let mut renamed = Vec::with_capacity(plan.arrivals.len());
    let mut rename_called = Vec::with_capacity(plan.arrivals.len());
    let mut worst_lag = Duration::ZERO;
    let steady_start = Instant::now();
    for (j, a) in plan.arrivals[..steady].iter().enumerate() {
        let due = steady_start + span.mul_f64(j as f64 / steady as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let (called, done) = land(&plan.wal_dir(a.client), &a.name, &a.header, true);
        rename_called.push(called);
        renamed.push(done);
        worst_lag = worst_lag.max(done.saturating_duration_since(due));
    }
    std::thread::sleep(span.mul_f64(1.0 / steady as f64) + SETTLE);
    let storm_start = Instant::now();
    let backlog_from = steady + plan.storm;
    let mut land_fast = |arrivals: &[Planned]| {
        for a in arrivals {
            let (called, done) = land(&plan.wal_dir(a.client), &a.name, &a.header, false);
            rename_called.push(called);
            renamed.push(done);
        }
    };
    land_fast(&plan.arrivals[steady..backlog_from]);
    let mut backlog_released = None;
    if backlog_from < plan.arrivals.len() {
        std::thread::sleep(SETTLE);
        hold.requested.store(true, Ordering::SeqCst);
        let _ = tx.send(Message::Hold);
        while !hold.holding.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        land_fast(&plan.arrivals[backlog_from..]);
        backlog_released = Some(Instant::now());
        hold.requested.store(false, Ordering::SeqCst);
    }
    Written {
        renamed,
        rename_called,
        worst_lag,
        steady_start,
        storm_start,
        backlog_released,
    }
}

/// `demo::write_part_then_rename`'s steps (write `.part`, fsync when `sync`, rename),
/// with the instants just before and just after the rename. archive_command
/// syncs; a bulk copy (rsync) does not.
fn land(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> (Instant, Instant) {
    let part = dir.join(format!("{name}.part"));
    let mut file = File::create(&part).expect("cannot create a .part file");
    file.write_all(bytes).expect("cannot write a .part file");
    if sync {
        file.sync_all().expect("cannot sync a .part file");
    }
    drop(file);
    let path = dir.join(name);
    let called = Instant::now();
    fs::rename(&part, &path).expect("cannot rename a .part file");
    (called, Instant::now())
}

// ---------------------------------------------------------------------------
// The dashboard's loop, headless

/// The loop's messages, as `tui::Message` (whose `App(Event)` is as large).
#[allow(clippy::large_enum_variant)]
enum Message {
    /// A change from the watcher, its observation, and when the observer delivered it.
    Change(WalChange, catalog::Observation, Instant),
    App(Event),
    /// A synthetic key press, with when it was sent.
    Key(KeyCode, Instant),
    /// Block until the writer lets go (see `Hold`).
    Hold,
}

struct Frame {
    end: Instant,
    update: Duration,
    draw: Duration,
    /// CPU time the loop's thread spent in this frame's update and draw calls.
    cpu: Duration,
    messages: usize,
}

impl Frame {
    fn time(&self) -> Duration {
        self.update + self.draw
    }
}

struct Run {
    written: Written,
    frames: Vec<Frame>,
    /// Per arrival: when the watcher's callback produced its `Arrived`.
    seen: Vec<Option<Instant>>,
    /// Per arrival: when the first frame that included it finished drawing.
    shown: Vec<Option<Instant>>,
    /// (sent, shown) of each synthetic key press.
    keys: Vec<(Instant, Instant)>,
    rescans: usize,
    final_screen: Screen,
    expected_counts: Vec<(String, usize)>,
}

/// What the last frame left: the screen's text (TestBackend), or the bytes
/// written in all (CrosstermBackend).
enum Screen {
    Text(String),
    Bytes(u64),
}

struct ByteCounter(Arc<std::sync::atomic::AtomicU64>);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn live_loop<B: Backend>(
    plan: Arc<Plan>,
    span: Duration,
    mut terminal: Terminal<B>,
    screen: impl Fn(&B) -> Screen,
) -> Run {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    // As the dashboard: each change is observed (stat, reads) on the observer's thread first.
    let observed_tx = tx.clone();
    let watch_tx = catalog::spawn_observer(&plan.root, move |change, observation| {
        observed_tx
            .send(Message::Change(change, observation, Instant::now()))
            .is_ok()
    })
    .expect("cannot start the observer");
    let watcher = RootWatcher::start(&plan.root, move |change| {
        let _ = watch_tx.send(change);
    })
    .expect("cannot watch the root");
    let catalog = catalog::scan(&plan.root, &ScanOptions::default()).expect("scan failed");
    let mut app = App::new(plan.root.clone(), Config::default(), SystemTime::now());
    app.update(Event::Watching(Ok(watcher.mode.clone())));
    app.update(Event::Scanned(Ok(catalog)));
    if terminal.draw(|frame| view::draw(frame, &app)).is_err() {
        panic!("cannot draw");
    }

    let stop = Arc::new(AtomicBool::new(false));
    spawn_ticker(tx.clone(), stop.clone());
    spawn_keys(tx.clone(), stop.clone());
    let hold = Arc::new(Hold::default());
    let (writer_plan, writer_hold, writer_tx) = (plan.clone(), hold.clone(), tx.clone());
    let writer =
        std::thread::spawn(move || write_arrivals(&writer_plan, span, &writer_hold, &writer_tx));

    let total = plan.arrivals.len();
    let mut seen = vec![None; total];
    let mut shown: Vec<Option<Instant>> = vec![None; total];
    let mut shown_count = 0;
    // Arrivals a batch carried that the catalog did not hold afterwards (none expected).
    let mut unconfirmed: Vec<usize> = Vec::new();
    let mut frames = Vec::new();
    let mut keys = Vec::new();
    let mut scans = Scans::default();
    let mut last_progress = Instant::now();

    let min_frame = min_frame();
    let mut last_end = Instant::now();
    while shown_count < total {
        let Some(first) = rx.recv().await else { break };
        if !min_frame.is_zero() {
            // The proposal, not today's loop: at most one frame per `min_frame`.
            tokio::time::sleep_until((last_end + min_frame).into()).await;
        }
        let pending = match max_batch() {
            // The proposal, not today's loop: a smaller bound on a frame's messages.
            Some(limit) => drain_at_most(first, &mut rx, limit),
            None => drain_batch(first, &mut rx),
        };
        let messages = pending.len();
        let mut changes = Vec::new();
        let mut candidates = std::mem::take(&mut unconfirmed);
        let mut keys_sent = Vec::new();
        let mut cpu = Duration::ZERO;
        let mut update = Duration::ZERO;
        let mut sweep = false;
        let mut commands = Vec::new();
        // As the dashboard's loop: consecutive changes become one Event::Observed.
        let mut apply = |app: &mut App, event: Event, update: &mut Duration, cpu: &mut Duration| {
            let (t, c) = (Instant::now(), thread_cpu());
            commands.extend(app.update(event));
            *update += t.elapsed();
            *cpu += thread_cpu().saturating_sub(c);
        };
        for message in pending {
            let event = match message {
                Message::Change(change, observation, at) => {
                    if let WalChange::Arrived { client, name, .. } = &change
                        && let Some(j) = plan.lookup(client, name)
                    {
                        seen[j].get_or_insert(at);
                        candidates.push(j);
                    }
                    changes.push(observation);
                    continue;
                }
                Message::Key(code, sent) => {
                    keys_sent.push(sent);
                    Event::Key(KeyEvent::from(code))
                }
                Message::Hold => {
                    // Blocked as on a stopped terminal; not counted in the frame.
                    hold.holding.store(true, Ordering::SeqCst);
                    while hold.requested.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    hold.holding.store(false, Ordering::SeqCst);
                    continue;
                }
                Message::App(event) => {
                    if matches!(event, Event::Scanned(_) | Event::ClientScanned { .. }) {
                        scans.finished(&event);
                        sweep = true;
                    }
                    event
                }
            };
            if !changes.is_empty() {
                apply(
                    &mut app,
                    Event::Observed(std::mem::take(&mut changes)),
                    &mut update,
                    &mut cpu,
                );
            }
            apply(&mut app, event, &mut update, &mut cpu);
        }
        if !changes.is_empty() {
            apply(&mut app, Event::Observed(changes), &mut update, &mut cpu);
        }
        let (t, c) = (Instant::now(), thread_cpu());
        if terminal.draw(|frame| view::draw(frame, &app)).is_err() {
            panic!("cannot draw");
        }
        let end = Instant::now();
        cpu += thread_cpu().saturating_sub(c);
        last_end = end;
        frames.push(Frame {
            end,
            update,
            draw: end - t,
            cpu,
            messages,
        });
        for command in commands {
            scans.run(command, &plan.root, &tx);
        }

        // Which arrivals this frame showed: those the catalog holds now.
        let holds = |j: usize| {
            let a = &plan.arrivals[j];
            let name = client_name(a.client);
            app.catalog
                .as_ref()
                .and_then(|c| c.client(&name))
                .is_some_and(|c| {
                    c.wal
                        .segments
                        .binary_search_by(|s| (s.name, s.partial).cmp(&(a.raw, false)))
                        .is_ok()
                })
        };
        if sweep {
            // A rescan may have brought arrivals whose events were lost.
            candidates.extend((0..total).filter(|&j| shown[j].is_none()));
            candidates.sort_unstable();
            candidates.dedup();
        }
        for j in candidates {
            if shown[j].is_some() {
                continue;
            }
            if holds(j) {
                shown[j] = Some(end);
                shown_count += 1;
                last_progress = end;
            } else if seen[j].is_some() {
                unconfirmed.push(j);
            }
        }
        keys.extend(keys_sent.into_iter().map(|sent| (sent, end)));
        if writer.is_finished() && last_progress.elapsed() > GIVE_UP_AFTER {
            eprintln!(
                "gave up: {} of {total} arrivals never reached the screen",
                total - shown_count
            );
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer panicked");
    drop(watcher);

    let final_screen = screen(terminal.backend());
    let catalog = app.catalog.as_ref().expect("catalog");
    let expected_counts = catalog
        .clients
        .iter()
        .map(|c| (c.name.clone(), c.wal.segments.len()))
        .collect();
    Run {
        written,
        frames,
        seen,
        shown,
        keys,
        rescans: scans.started,
        final_screen,
        expected_counts,
    }
}

/// The loop's side effects that matter here: rescans (on lost events), one at a time.
#[derive(Default)]
struct Scans {
    running: bool,
    again: bool,
    started: usize,
}

impl Scans {
    fn run(&mut self, command: AppCommand, root: &Path, tx: &mpsc::UnboundedSender<Message>) {
        let tx = tx.clone();
        let root = root.to_owned();
        match command {
            AppCommand::Rescan if self.running => self.again = true,
            AppCommand::Rescan => {
                self.running = true;
                self.started += 1;
                tokio::task::spawn_blocking(move || {
                    let result = catalog::scan(&root, &ScanOptions::default());
                    let _ = tx.send(Message::App(Event::Scanned(result)));
                });
            }
            AppCommand::RescanClient(name) => {
                self.started += 1;
                tokio::task::spawn_blocking(move || {
                    let result = catalog::scan_client(&root, &name, &ScanOptions::default());
                    let _ = tx.send(Message::App(Event::ClientScanned {
                        name,
                        result: result.map(Box::new).map_err(|e| e.to_string()),
                    }));
                });
            }
            other => eprintln!("unexpected command {other:?}"),
        }
    }

    fn finished(&mut self, event: &Event) {
        if matches!(event, Event::Scanned(_)) {
            self.running = false;
            // A request while it ran: the loop asks again on its next lost event.
            self.again = false;
        }
    }
}

fn spawn_ticker(tx: mpsc::UnboundedSender<Message>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        interval.tick().await;
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            if tx
                .send(Message::App(Event::Tick(SystemTime::now())))
                .is_err()
            {
                break;
            }
        }
    });
}

/// Down, Up, Down, …: the selection moves and comes back.
fn spawn_keys(tx: mpsc::UnboundedSender<Message>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(KEY_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut down = true;
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            let code = if down { KeyCode::Down } else { KeyCode::Up };
            down = !down;
            if tx.send(Message::Key(code, Instant::now())).is_err() {
                break;
            }
        }
    });
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), or zero where unsupported.
fn thread_cpu() -> Duration {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut time = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) } == 0 {
            return Duration::new(time.tv_sec as u64, time.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

fn screen_text(backend: &TestBackend) -> String {
    let buffer = backend.buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

// ---------------------------------------------------------------------------
// The reference: inotifywait

struct Reference {
    child: Child,
    reader: Option<std::thread::JoinHandle<Vec<Option<Instant>>>>,
}

impl Reference {
    /// Starts `inotifywait -m -r -e moved_to` on the root and waits for its watches.
    fn start(root: &Path, plan: &Plan) -> Option<Reference> {
        let mut command = Command::new("stdbuf");
        command.arg("-oL");
        if Command::new("stdbuf")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            command = Command::new("inotifywait");
        } else {
            command.arg("inotifywait");
        }
        let mut child = command
            .args(["-m", "-r", "-e", "moved_to", "--format", "%w%f"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let stderr = child.stderr.take()?;
        let mut stderr = BufReader::new(stderr).lines();
        let ready = stderr
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Watches established"));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::spawn(move || stderr.for_each(drop));
        let stdout = child.stdout.take()?;
        let prefix = format!("{}/", root.display());
        let index: HashMap<String, usize> = plan.index.clone();
        let total = plan.arrivals.len();
        let reader = std::thread::spawn(move || {
            let mut seen = vec![None; total];
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                let Some(rest) = line.strip_prefix(&prefix) else {
                    continue;
                };
                // clientNN/wal/NAME
                let key = rest.replacen("/wal/", "/", 1);
                if let Some(&j) = index.get(&key) {
                    seen[j].get_or_insert(at);
                }
            }
            seen
        });
        Some(Reference {
            child,
            reader: Some(reader),
        })
    }

    fn finish(&mut self) -> Vec<Option<Instant>> {
        // Give it a moment for the last lines, then stop it (our own child, by its handle).
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// The report

struct Summary {
    n: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
}

fn summary(values: &[Duration]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    let rank = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(Summary {
        n,
        median: rank(0.5),
        p99: rank(0.99),
        max: v[n - 1],
    })
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn row(name: &str, values: &[Duration]) {
    match summary(values) {
        Some(s) => println!(
            "| {name} | {} | {} | {} | {} |",
            s.n,
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        ),
        None => println!("| {name} | 0 | - | - | - |"),
    }
}

type Range = std::ops::Range<usize>;

fn report(plan: &Plan, run: &Run, reference: Option<&[Option<Instant>]>) {
    let w = &run.written;
    let steady = 0..plan.steady;
    let storm = plan.steady..plan.steady + plan.storm;
    let backlog = plan.steady + plan.storm..plan.arrivals.len();
    // Per arrival, from an instant of the writer's to one of the observers'.
    let span_of = |range: Range,
                   from: &dyn Fn(usize) -> Option<Instant>,
                   to: &dyn Fn(usize) -> Option<Instant>| {
        range
            .filter_map(|j| Some(to(j)?.saturating_duration_since(from(j)?)))
            .collect::<Vec<Duration>>()
    };
    let renamed = |j: usize| Some(w.renamed[j]);
    let called = |j: usize| Some(w.rename_called[j]);
    let seen = |j: usize| run.seen[j];
    let shown = |j: usize| run.shown[j];
    let line_read = |j: usize| reference.and_then(|r| r.get(j).copied().flatten());

    let storm_end = storm
        .clone()
        .filter_map(|j| run.shown[j])
        .max()
        .unwrap_or(w.storm_start);
    let in_steady = |t: Instant| t >= w.steady_start && t < w.storm_start;
    let in_storm = |t: Instant| t >= w.storm_start && t <= storm_end;
    let frames = |phase: &dyn Fn(Instant) -> bool| -> Vec<&Frame> {
        run.frames.iter().filter(|f| phase(f.end)).collect()
    };
    let (steady_frames, storm_frames) = (frames(&in_steady), frames(&in_storm));
    let keys = |phase: &dyn Fn(Instant) -> bool| -> Vec<Duration> {
        run.keys
            .iter()
            .filter(|(sent, _)| phase(*sent))
            .map(|(sent, shown)| shown.saturating_duration_since(*sent))
            .collect()
    };

    let missing = run.shown.iter().filter(|s| s.is_none()).count();
    println!(
        "\nwriter: steady phase's worst lag behind schedule {}; storm of {} renames took {}",
        ms(w.worst_lag),
        storm.len(),
        ms(storm
            .clone()
            .last()
            .map_or(Duration::ZERO, |j| w.renamed[j] - w.storm_start))
    );
    println!(
        "arrivals on screen: {} of {} ({} rescans asked for by lost events)",
        run.shown.len() - missing,
        run.shown.len(),
        run.rescans
    );

    println!(
        "\nsteady phase: {} segments over {:.0} s across {CLIENTS} clients",
        plan.steady,
        (w.storm_start - w.steady_start - SETTLE).as_secs_f64()
    );
    // From the instant before rename() was called: the event happens inside
    // the call, which can take milliseconds to return (ext4 after an fsync),
    // so this is the conservative measure and the one the goal is checked on.
    let latency = span_of(steady.clone(), &called, &shown);
    println!();
    table_head();
    row(
        "arrival-to-screen latency (rename called → frame drawn)",
        &latency,
    );
    row(
        "  rename returned → frame drawn (0 when the frame came first)",
        &span_of(steady.clone(), &renamed, &shown),
    );
    row(
        "  watcher (rename called → notify callback)",
        &span_of(steady.clone(), &called, &seen),
    );
    row(
        "  loop (notify callback → frame drawn: event seen to screen)",
        &span_of(steady.clone(), &seen, &shown),
    );
    row(
        "rename() call itself (called → returned)",
        &span_of(steady.clone(), &called, &renamed),
    );
    frame_rows(&steady_frames);
    row("key press → frame drawn", &keys(&in_steady));
    let span = (w.storm_start - w.steady_start).as_secs_f64();
    let busy: f64 = steady_frames.iter().map(|f| f.time().as_secs_f64()).sum();
    println!(
        "\nframes: {} ({:.0}/s; update + draw kept the loop busy {:.0} % of the time); \
         messages per frame: median {}, max {}",
        steady_frames.len(),
        steady_frames.len() as f64 / span,
        busy / span * 100.0,
        median_usize(steady_frames.iter().map(|f| f.messages)),
        steady_frames.iter().map(|f| f.messages).max().unwrap_or(0)
    );
    over_goal(&steady_frames);

    if reference.is_some() {
        println!("\nreference, same renames, all from the instant before rename() was called:\n");
        table_head();
        let walwarden = latency.clone();
        let notify = span_of(steady.clone(), &called, &seen);
        let inotifywait = span_of(steady.clone(), &called, &line_read);
        row("walwarden: rename called → frame drawn", &walwarden);
        row("notify: rename called → callback (in process)", &notify);
        row(
            "inotifywait -m -r -e moved_to: rename called → line read",
            &inotifywait,
        );
        if let (Some(a), Some(n), Some(r)) =
            (summary(&walwarden), summary(&notify), summary(&inotifywait))
        {
            println!(
                "\nratio of medians walwarden / inotifywait = {:.1} ({} / {}); \
                 notify callback / inotifywait = {:.2}",
                a.median.as_secs_f64() / r.median.as_secs_f64(),
                ms(a.median),
                ms(r.median),
                n.median.as_secs_f64() / r.median.as_secs_f64()
            );
        }
    }
    if let Some(lat) = summary(&latency) {
        let frame_max = steady_frames
            .iter()
            .map(|f| f.time())
            .max()
            .unwrap_or_default();
        let over = steady_frames
            .iter()
            .filter(|f| f.time() > FRAME_GOAL)
            .count();
        println!(
            "\ngoals: p99 latency < 250 ms: {} ({}); no frame over 50 ms: {} ({} over, max {})",
            verdict(lat.p99 < LATENCY_GOAL),
            ms(lat.p99),
            verdict(over == 0),
            over,
            ms(frame_max)
        );
    }

    if !storm.is_empty() {
        let last_rename = w.renamed[storm.end - 1];
        println!(
            "\nstorm: {} renames into {} as fast as possible (write .part, rename; no fsync)",
            storm.len(),
            client_name(STORM_CLIENT)
        );
        println!();
        table_head();
        row(
            "arrival-to-screen latency (rename called → frame drawn)",
            &span_of(storm.clone(), &called, &shown),
        );
        row(
            "  loop (notify callback → frame drawn)",
            &span_of(storm.clone(), &seen, &shown),
        );
        row(
            "  watcher (rename called → notify callback)",
            &span_of(storm.clone(), &called, &seen),
        );
        if reference.is_some() {
            row(
                "inotifywait (rename called → line read)",
                &span_of(storm.clone(), &called, &line_read),
            );
        }
        frame_rows(&storm_frames);
        row("key press → frame drawn", &keys(&in_storm));
        let gaps: Vec<Duration> = storm_frames
            .windows(2)
            .map(|p| p[1].end - p[0].end)
            .collect();
        println!(
            "\nframes: {}; longest gap between frames {}; messages per frame max {}",
            storm_frames.len(),
            gaps.iter().max().map_or("-".into(), |d| ms(*d)),
            storm_frames.iter().map(|f| f.messages).max().unwrap_or(0)
        );
        over_goal(&storm_frames);
        println!(
            "caught up: last rename at +{}, screen showed all {} at +{} (last rename → screen {})",
            ms(last_rename - w.storm_start),
            storm.len(),
            ms(storm_end - w.storm_start),
            ms(storm_end.saturating_duration_since(last_rename))
        );
        if let Some(last) = storm.clone().filter_map(line_read).max() {
            println!(
                "inotifywait had printed all its lines at +{}",
                ms(last - w.storm_start)
            );
        }
    }

    if let (Some(released), false) = (w.backlog_released, backlog.is_empty()) {
        let backlog_end = backlog
            .clone()
            .filter_map(|j| run.shown[j])
            .max()
            .unwrap_or(released);
        let in_backlog = |t: Instant| t >= released && t <= backlog_end;
        let backlog_frames = frames(&in_backlog);
        let held_since = w.rename_called[backlog.start];
        println!(
            "\nbacklog: the loop held (as by a stopped terminal) while {} renames landed in {} \
             ({} of writing); then let go",
            backlog.len(),
            client_name(BACKLOG_CLIENT),
            ms(released - held_since)
        );
        println!();
        table_head();
        frame_rows(&backlog_frames);
        row(
            "key press → frame drawn (keys sent after the release)",
            &keys(&|t| t >= released && t <= backlog_end),
        );
        println!(
            "\nframes to catch up: {}; messages per frame: {:?}",
            backlog_frames.len(),
            backlog_frames
                .iter()
                .map(|f| f.messages)
                .filter(|&m| m > 1)
                .collect::<Vec<_>>()
        );
        over_goal(&backlog_frames);
        println!(
            "caught up: screen showed all {} at {} after the release",
            backlog.len(),
            ms(backlog_end - released)
        );
    }

    match &run.final_screen {
        // Sanity: the last frame shows every client's final segment count.
        Screen::Text(text) => {
            let shown_counts = run
                .expected_counts
                .iter()
                .filter(|(name, count)| {
                    text.lines()
                        .any(|l| l.contains(name.as_str()) && l.contains(&format!(" {count} ")))
                })
                .count();
            println!(
                "\nlast frame shows the WAL count of {shown_counts} of {} clients",
                run.expected_counts.len()
            );
        }
        Screen::Bytes(bytes) => println!(
            "\nescape sequences written: {bytes} bytes in {} frames ({} per frame)",
            run.frames.len() + 1,
            bytes / (run.frames.len() as u64 + 1)
        ),
    }
    println!("load average at the end: {}", load_average());
}

fn table_head() {
    println!("| measure | n | median | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
}

fn frame_rows(frames: &[&Frame]) {
    let of = |f: fn(&Frame) -> Duration| frames.iter().map(|x| f(x)).collect::<Vec<_>>();
    row("frame time (update + draw, wall)", &of(Frame::time));
    row("  update", &of(|f| f.update));
    row("  draw", &of(|f| f.draw));
    row("frame CPU time (loop thread)", &of(|f| f.cpu));
}

/// Frames over the goal, by wall time and by CPU time: the difference is
/// time the loop's thread was not running (other processes, the writer).
fn over_goal(frames: &[&Frame]) {
    let wall = frames.iter().filter(|f| f.time() > FRAME_GOAL).count();
    let cpu = frames.iter().filter(|f| f.cpu > FRAME_GOAL).count();
    println!(
        "frames over {}: {wall} by wall time, {cpu} by the loop thread's CPU time",
        ms(FRAME_GOAL)
    );
}

fn load_average() -> String {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn median_usize(values: impl Iterator<Item = usize>) -> usize {
    let mut v: Vec<usize> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn machine() -> String {
    format!("{}, load average {}", common::machine(), load_average())
}
