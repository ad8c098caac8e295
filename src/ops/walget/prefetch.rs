//! The detached prefetcher: keeps the next segments of the restore's line
//! decompressed and verified in the spool while PostgreSQL replays the
//! current one, on the core(s) PostgreSQL's single startup process leaves
//! idle.
//!
//! The first segment request of a recovery starts it (`spawn`) as its own
//! process in its own process group, so the signals PostgreSQL sends to the
//! startup process's group (a fast shutdown's SIGTERM) do not reach it;
//! inherited descriptors are closed so it holds none of the server's pipes.
//! One runs per spool: it holds the spool's lock for its whole life.
//!
//! It follows the request log to learn where replay is, keeps
//! `prefetch_depth` segments after the last request ready (never more bytes
//! than the plan's bound, at least one segment), evicts what replay has
//! passed, and stops when recovery is over: the data directory's signal
//! file is gone, the postmaster is gone (its pid file removed or its
//! process dead, however it died), no request came for the idle timeout, the
//! spool was removed under it, or it is asked to (SIGTERM, SIGINT, SIGHUP).
//! Stopping removes the spool; the stop and its reason go to the request log.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WalGetError;
use super::fetch::{self, FetchError};
use super::plan::WalGetPlan;
use super::progress::{self, RequestOutcome, RequestRecord, Tail};
use super::spool::Spool;
use crate::archive::wal::{RawSegmentName, SegmentId, SegmentNo, WalFileKind};

/// How often the stop conditions are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long the loop sleeps when it has nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(3);
/// A segment absent from the archive is looked for again after this (a live
/// archive may still receive it).
const ABSENT_RETRY: Duration = Duration::from_secs(1);

/// Why a prefetcher stopped (or did not start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    RecoveryEnded,
    ServerGone,
    Idle,
    SpoolRemoved,
    Signalled,
    AlreadyRunning,
    NoSpool,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::RecoveryEnded => "recovery ended",
            StopReason::ServerGone => "the server is gone",
            StopReason::Idle => "no request for the idle timeout",
            StopReason::SpoolRemoved => "the spool was removed",
            StopReason::Signalled => "asked to stop",
            StopReason::AlreadyRunning => "another prefetcher runs",
            StopReason::NoSpool => "no spool",
        }
    }
}

/// Starts the prefetcher for the plan at `plan_path`: this executable, run
/// as `wal-get --plan PLAN --prefetch`, detached (see the module doc).
pub fn spawn(exe: &Path, plan_path: &Path) -> Result<u32, WalGetError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let child = Command::new(exe)
        .arg("wal-get")
        .arg("--plan")
        .arg(plan_path)
        .arg("--prefetch")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(WalGetError::Spawn)?;
    Ok(child.id())
}

/// Closes every descriptor above stderr this process inherited: PostgreSQL's
/// startup process passes some (its postmaster-death pipe, a log pipe) to
/// restore_command, and a long-lived holder of a pipe's write end would keep
/// its reader waiting. Call first thing, before opening anything.
pub fn close_inherited_descriptors() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    // The listing's own descriptor is closed by now; closing it is refused (EBADF).
    for fd in fds {
        if nix::fcntl::fcntl(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_ok()
        {
            // SAFETY: called before this process opened anything of its own,
            // so no Rust object owns `fd`; it is open (F_GETFD succeeded) and
            // is closed exactly once, here.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// SIGTERM, SIGINT and SIGHUP end the loop with a clean-up instead of killing it.
pub fn install_stop_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// The conditions that end a prefetcher, looked at every [`WATCH_EVERY`].
#[derive(Debug)]
pub struct Watch {
    data_dir: PathBuf,
    spool_dir: PathBuf,
    /// The folder this prefetcher works in, to tell when the path stops naming it.
    spool: Spool,
    postmaster: Option<Postmaster>,
    idle_timeout: Duration,
    last_request: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Postmaster {
    pid: u32,
    /// `/proc/<pid>/stat` field 22: tells a reused pid from the postmaster.
    start_time: u64,
}

impl Watch {
    /// Reads the postmaster's pid from the data directory, if one runs.
    pub fn new(plan: &WalGetPlan, spool: &Spool, now: Instant) -> Watch {
        let postmaster = fs::read_to_string(plan.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
            .and_then(|pid| {
                Some(Postmaster {
                    pid,
                    start_time: process_start_time(pid)?,
                })
            });
        Watch {
            data_dir: plan.data_dir.clone(),
            spool_dir: plan.spool_dir.clone(),
            spool: spool.clone(),
            postmaster,
            idle_timeout: Duration::from_secs(plan.idle_timeout_secs),
            last_request: now,
        }
    }

    pub fn requested(&mut self, now: Instant) {
        self.last_request = now;
    }

    pub fn stop_reason(&self, now: Instant) -> Option<StopReason> {
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            return Some(StopReason::Signalled);
        }
        if !super::plan::recovery_in_progress(&self.data_dir) {
            return Some(StopReason::RecoveryEnded);
        }
        if let Some(postmaster) = self.postmaster {
            let pid_file = self.data_dir.join("postmaster.pid").exists();
            if !pid_file || process_start_time(postmaster.pid) != Some(postmaster.start_time) {
                return Some(StopReason::ServerGone);
            }
        }
        // Removed, or swapped for a link or another folder.
        if !self.spool.still_at(&self.spool_dir) {
            return Some(StopReason::SpoolRemoved);
        }
        if now.duration_since(self.last_request) > self.idle_timeout {
            return Some(StopReason::Idle);
        }
        None
    }
}

/// The start time of a live (not zombie) process, from `/proc/<pid>/stat`.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields
        .first()
        .is_some_and(|state| *state == "Z" || *state == "X")
    {
        return None;
    }
    // Field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
    fields.get(19)?.parse().ok()
}

/// Runs a prefetcher for `plan` until a stop condition holds, then removes
/// the spool. Returns why it stopped.
pub fn run(plan: &WalGetPlan) -> StopReason {
    let spool = Spool::new(&plan.spool_dir);
    // The helper made it before starting us; when it is gone, a restore's
    // `finish` removed it meanwhile and nothing is to be prefetched. A link
    // in its place is not followed: nothing is prefetched into it.
    let Ok(pinned) = Spool::pinned(&plan.spool_dir) else {
        return StopReason::NoSpool;
    };
    // The helper that started us may look at the lock while we take it.
    let mut lock = None;
    for _ in 0..20 {
        if let Ok(Some(held)) = pinned.lock_prefetcher() {
            lock = Some(held);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let Some(lock) = lock else {
        return StopReason::AlreadyRunning;
    };
    let _ = progress::append(
        &plan.request_log,
        &RequestRecord::new("", RequestOutcome::PrefetchStart),
    );
    let (reason, prefetched) = Prefetcher::new(plan, &pinned).run();
    // Recorded before the spool (and its lock) goes: whoever waits for the
    // lock to go, to read the totals, finds this line there.
    let record = RequestRecord {
        detail: Some(reason.as_str().to_owned()),
        bytes: prefetched,
        ..RequestRecord::new("", RequestOutcome::PrefetchStop)
    }
    .with_usage();
    let _ = progress::append(&plan.request_log, &record);
    // By its path while the path names it (the folder goes too); else the
    // path is someone else's now (a link, a new spool): only the held
    // folder's own files go.
    if pinned.still_at(&plan.spool_dir) {
        let _ = spool.remove();
    } else {
        let _ = pinned.remove();
    }
    drop(lock);
    reason
}

/// A job's result: the segment and what fetching it gave.
type Done = (String, Result<u64, FetchError>);

struct Prefetcher<'a> {
    plan: &'a WalGetPlan,
    spool: &'a Spool,
    depth: u64,
    /// The last segment PostgreSQL asked for.
    position: Option<SegmentNo>,
    in_flight: HashSet<String>,
    /// Made ready once: when it is gone from the spool the helper took it,
    /// and it is not fetched again (the helper logs the request only after
    /// the hand-over, so the spool tells first).
    produced: HashSet<String>,
    refused: HashSet<String>,
    absent: HashMap<String, Instant>,
    prefetched: u64,
}

impl<'a> Prefetcher<'a> {
    fn new(plan: &'a WalGetPlan, spool: &'a Spool) -> Prefetcher<'a> {
        let seg = plan.segment_size as u64;
        let by_bytes = (plan.spool_max_bytes / seg).max(1);
        Prefetcher {
            plan,
            spool,
            depth: (plan.prefetch_depth as u64).min(by_bytes).max(1),
            position: None,
            in_flight: HashSet::new(),
            produced: HashSet::new(),
            refused: HashSet::new(),
            absent: HashMap::new(),
            prefetched: 0,
        }
    }

    fn run(mut self) -> (StopReason, u64) {
        self.histories();
        let (jobs_tx, jobs_rx) = mpsc::channel::<(SegmentId, String)>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (sync_tx, sync_rx) = mpsc::channel::<fs::File>();
        let reason = std::thread::scope(|scope| {
            for _ in 0..self.plan.workers {
                let jobs = Arc::clone(&jobs_rx);
                let done = done_tx.clone();
                let sync = sync_tx.clone();
                let (plan, spool) = (self.plan, self.spool);
                scope.spawn(move || worker(plan, spool, &jobs, &done, &sync));
            }
            drop(done_tx);
            drop(sync_tx);
            // Flushes each finished file to disk while the workers inflate the
            // next one: PostgreSQL fsyncs every restored segment before using
            // it, and a clean file makes that fsync instant.
            scope.spawn(move || {
                for file in sync_rx {
                    let _ = file.sync_data();
                }
            });
            let reason = self.schedule(&jobs_tx, &done_rx);
            // Closing the queue ends the workers once their current file is done.
            drop(jobs_tx);
            reason
        });
        (reason, self.prefetched)
    }

    /// The line's `.history` files, fetched once at the start (tiny; asked
    /// at every start and every promotion).
    fn histories(&self) {
        for timeline in self.plan.line.iter().skip(1) {
            let name = format!("{:08X}.history", timeline.timeline);
            let partial = self.spool.partial(&name);
            if fetch::fetch_history(self.plan, &name, &partial).is_ok() {
                let _ = fs::rename(&partial, self.spool.ready(&name));
            }
        }
    }

    fn schedule(
        &mut self,
        jobs: &mpsc::Sender<(SegmentId, String)>,
        done: &mpsc::Receiver<Done>,
    ) -> StopReason {
        let mut watch = Watch::new(self.plan, self.spool, Instant::now());
        let mut tail = Tail::new(&self.plan.request_log);
        let mut watched_at = Instant::now();
        loop {
            let now = Instant::now();
            let mut busy = false;
            for record in tail.new_records() {
                if matches!(
                    record.outcome,
                    RequestOutcome::PrefetchStart | RequestOutcome::PrefetchStop
                ) {
                    continue;
                }
                watch.requested(now);
                if let Some(id) = self.segment_of(&record.file) {
                    self.position = Some(id.segment);
                    busy = true;
                }
            }
            if now.duration_since(watched_at) >= WATCH_EVERY {
                watched_at = now;
                if let Some(reason) = watch.stop_reason(now) {
                    return reason;
                }
            }
            while let Ok((name, result)) = done.try_recv() {
                busy = true;
                self.in_flight.remove(&name);
                match result {
                    Ok(bytes) => {
                        self.prefetched += bytes;
                        self.produced.insert(name);
                    }
                    Err(FetchError::NotInArchive) => {
                        self.absent.insert(name, now + ABSENT_RETRY);
                    }
                    // The helper fetches it again itself and says why it refuses.
                    Err(FetchError::Refused { .. } | FetchError::AbandonedTail { .. }) => {
                        self.refused.insert(name);
                    }
                }
            }
            busy |= self.fill(jobs, now);
            if !busy {
                std::thread::sleep(IDLE_POLL);
            }
        }
    }

    fn segment_of(&self, file: &str) -> Option<SegmentId> {
        match WalFileKind::classify(file) {
            WalFileKind::Segment {
                name,
                compressed: false,
                partial: false,
            } => name.resolve(self.plan.segment_size).ok(),
            _ => None,
        }
    }

    /// Evicts what replay passed and queues what the window lacks; true when
    /// it queued something.
    fn fill(&mut self, jobs: &mpsc::Sender<(SegmentId, String)>, now: Instant) -> bool {
        let Ok(ready) = self.spool.ready_files() else {
            return false;
        };
        let start = match self.position {
            Some(p) => p.next(),
            None => match self.plan.first() {
                Some(first) => first,
                None => return false,
            },
        };
        let end = SegmentNo(start.0 + self.depth);
        let seg = self.plan.segment_size as u64;
        let mut held = 0u64;
        for (name, size) in &ready {
            let Some(id) =
                RawSegmentName::parse(name).and_then(|r| r.resolve(self.plan.segment_size).ok())
            else {
                continue;
            };
            // Handed over already (a request is logged after its answer), behind
            // replay, or beyond the window (replay went back): not needed now.
            if self.position.is_some_and(|p| id.segment <= p) || id.segment >= end {
                let _ = fs::remove_file(self.spool.ready(name));
                self.produced.remove(name);
            } else {
                held += size;
            }
        }
        held += self.in_flight.len() as u64 * seg;
        let ready: HashSet<&str> = ready.iter().map(|(n, _)| n.as_str()).collect();
        let mut queued = false;
        let mut segno = start;
        while segno < end && self.in_flight.len() < self.plan.workers as usize {
            let id = self.plan.expected(segno);
            let name = self.plan.file_name(id);
            segno = segno.next();
            if ready.contains(name.as_str())
                || self.in_flight.contains(&name)
                || self.produced.contains(&name)
                || self.refused.contains(&name)
                || self.absent.get(&name).is_some_and(|until| now < *until)
            {
                continue;
            }
            // The bound, except that one segment is always allowed.
            if held > 0 && held + seg > self.plan.spool_max_bytes {
                break;
            }
            if jobs.send((id, name.clone())).is_err() {
                break;
            }
            held += seg;
            self.in_flight.insert(name);
            queued = true;
        }
        queued
    }
}

fn worker(
    plan: &WalGetPlan,
    spool: &Spool,
    jobs: &Mutex<mpsc::Receiver<(SegmentId, String)>>,
    done: &mpsc::Sender<Done>,
    sync: &mpsc::Sender<fs::File>,
) {
    loop {
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((id, name)) = job else {
            return;
        };
        let partial = spool.partial(&name);
        let result =
            fetch::fetch_segment_file(plan, id, &name, &partial).and_then(|(fetched, file)| {
                fs::rename(&partial, spool.ready(&name))
                    .map(|()| {
                        let _ = sync.send(file);
                        fetched.bytes
                    })
                    .map_err(|e| FetchError::Refused {
                        code: crate::pg::pglog::walget_line::RefusalCode::HelperFailed,
                        reason: e.to_string(),
                    })
            });
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        if done.send((name, result)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::Cluster;
    use crate::ops::walget::plan::tests::{SEG, three_timelines};
    use crate::ops::walget::serve::serve;

    /// The whole cycle in one process: a prefetcher thread fills the spool
    /// ahead of requests, is bounded, and stops and cleans up when the
    /// recovery signal goes.
    #[test]
    fn the_prefetcher_stays_ahead_within_its_bound_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = three_timelines(dir.path());
        plan.prefetch_depth = 4;
        plan.spool_max_bytes = 3 * SEG as u64;
        plan.workers = 2;
        plan.write(&dir.path().join("plan.json"), None).unwrap();
        fs::create_dir_all(&plan.archive_dir).unwrap();
        fs::create_dir_all(&plan.data_dir).unwrap();
        fs::write(plan.data_dir.join("recovery.signal"), b"").unwrap();
        let cluster = Cluster::new(plan.system_identifier, SEG);
        for segno in 3..=7 {
            cluster
                .archive_segment(&plan.archive_dir, cluster.id(1, segno), None)
                .unwrap();
        }
        let spool = Spool::new(&plan.spool_dir);
        let prefetcher = {
            let plan = plan.clone();
            std::thread::spawn(move || run(&plan))
        };
        let wait_for = |what: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !what() {
                assert!(
                    Instant::now() < deadline,
                    "timed out; spool: {:?}; log: {:?}",
                    fs::read_dir(&plan.spool_dir).map(|d| d
                        .filter_map(Result::ok)
                        .map(|e| e.file_name())
                        .collect::<Vec<_>>()),
                    fs::read_to_string(&plan.request_log)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let segments = |spool: &Spool| -> Vec<String> {
            let mut names: Vec<String> = spool
                .ready_files()
                .unwrap()
                .into_iter()
                .map(|f| f.0)
                .filter(|n| !n.ends_with(".history"))
                .collect();
            names.sort();
            names
        };
        // Before any request it starts at the base backup's start, bounded to 3 segments.
        wait_for(&|| spool.ready("000000010000000000000005").exists());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            segments(&spool),
            [
                "000000010000000000000003",
                "000000010000000000000004",
                "000000010000000000000005"
            ]
        );
        assert!(spool.prefetcher().is_some());

        let dest = plan.data_dir.join("RECOVERYXLOG");
        let answer = serve(&plan, "000000010000000000000003", &dest, &mut || {});
        assert_eq!(answer.exit_code(), 0);
        // Replay moved on: 6 comes; 7 waits for room.
        wait_for(&|| spool.ready("000000010000000000000006").exists());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            segments(&spool),
            [
                "000000010000000000000004",
                "000000010000000000000005",
                "000000010000000000000006"
            ]
        );
        assert_eq!(
            serve(&plan, "000000010000000000000004", &dest, &mut || {}).exit_code(),
            0
        );
        // 7 comes; 8 is timeline 2's and absent: not fetched, no error.
        wait_for(&|| spool.ready("000000010000000000000007").exists());
        let records = progress::read(&plan.request_log).unwrap();
        assert_eq!(records[0].outcome, RequestOutcome::PrefetchStart);
        assert_eq!(records[1].outcome, RequestOutcome::Spool);

        fs::remove_file(plan.data_dir.join("recovery.signal")).unwrap();
        assert_eq!(prefetcher.join().unwrap(), StopReason::RecoveryEnded);
        assert!(!plan.spool_dir.exists(), "the spool is removed");
        let last = progress::read(&plan.request_log).unwrap().pop().unwrap();
        assert_eq!(last.outcome, RequestOutcome::PrefetchStop);
        assert_eq!(last.detail.as_deref(), Some("recovery ended"));
        assert!(last.bytes >= 5 * SEG as u64, "{last:?}");
    }

    #[test]
    fn the_watch_sees_a_dead_server_and_an_idle_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = three_timelines(dir.path());
        plan.idle_timeout_secs = 1;
        fs::create_dir_all(&plan.data_dir).unwrap();
        fs::create_dir_all(&plan.spool_dir).unwrap();
        fs::write(plan.data_dir.join("recovery.signal"), b"").unwrap();
        // A child stands in for the postmaster.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        fs::write(
            plan.data_dir.join("postmaster.pid"),
            format!("{}\n{}\n", child.id(), plan.data_dir.display()),
        )
        .unwrap();
        let start = Instant::now();
        let spool = Spool::pinned(&plan.spool_dir).unwrap();
        let watch = Watch::new(&plan, &spool, start);
        assert_eq!(watch.stop_reason(start), None);
        assert_eq!(
            watch.stop_reason(start + Duration::from_secs(2)),
            Some(StopReason::Idle)
        );
        child.kill().unwrap();
        // Killed but not yet reaped is dead too (a zombie).
        let deadline = Instant::now() + Duration::from_secs(5);
        while watch.stop_reason(start).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(watch.stop_reason(start), Some(StopReason::ServerGone));
        child.wait().unwrap();
        assert_eq!(watch.stop_reason(start), Some(StopReason::ServerGone));
        fs::remove_file(plan.data_dir.join("recovery.signal")).unwrap();
        assert_eq!(watch.stop_reason(start), Some(StopReason::RecoveryEnded));
    }

    /// The PostgreSQL user may swap the spool's path for a link to another
    /// folder (the archive): the watch stops the prefetcher, and the pinned
    /// spool still names the folder it opened, never the link's target.
    #[test]
    fn a_spool_swapped_for_a_link_stops_the_prefetcher_and_steers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        fs::create_dir_all(&plan.data_dir).unwrap();
        fs::create_dir_all(&plan.spool_dir).unwrap();
        fs::create_dir_all(&plan.archive_dir).unwrap();
        fs::write(plan.data_dir.join("recovery.signal"), b"").unwrap();
        let archived = plan.archive_dir.join("000000010000000000000004");
        fs::write(&archived, b"an archived segment").unwrap();
        let start = Instant::now();
        let spool = Spool::pinned(&plan.spool_dir).unwrap();
        let watch = Watch::new(&plan, &spool, start);
        assert_eq!(watch.stop_reason(start), None);

        let moved = dir.path().join("moved-spool");
        fs::rename(&plan.spool_dir, &moved).unwrap();
        std::os::unix::fs::symlink(&plan.archive_dir, &plan.spool_dir).unwrap();
        assert_eq!(watch.stop_reason(start), Some(StopReason::SpoolRemoved));
        // What the prefetcher does meanwhile lands in the folder it opened.
        fs::write(spool.ready("000000010000000000000005"), b"x").unwrap();
        assert!(moved.join("000000010000000000000005").exists());
        let _ = fs::remove_file(spool.ready("000000010000000000000004"));
        assert_eq!(fs::read(&archived).unwrap(), b"an archived segment");
        assert!(
            Spool::pinned(&plan.spool_dir).is_err(),
            "a link is never pinned"
        );
        // A fresh folder under the same name is not the one held either.
        fs::remove_file(&plan.spool_dir).unwrap();
        fs::create_dir(&plan.spool_dir).unwrap();
        assert!(!spool.still_at(&plan.spool_dir));
    }
}
