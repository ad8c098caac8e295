//! The end of a restore that used `walwarden wal-get`: what the restore or
//! the drill calls once the server has left recovery (or was stopped), to
//! read the replay's totals and remove the plan, the request log and any
//! spool left behind.
//!
//! The prefetcher removes its spool itself when it stops; this is the
//! safety net for what it could not do: a spool folder whose parent the
//! PostgreSQL user may not write, a prefetcher still waiting out its idle
//! timeout (asked to stop with SIGTERM, found by its command line, which
//! names this plan).
//!
//! This runs as root on names the PostgreSQL user can change (the spool and
//! request log are theirs, the folder beside the data directory usually
//! is), so it trusts none of them: the spool and the request log are the
//! names the plan's own name implies (`<data>.walwarden-spool`,
//! `<data>.walwarden-wal-get.jsonl`), never what the plan file says now;
//! every removal goes through the store's guard, so nothing inside the
//! backup root is removed whatever a link points at; and no removal
//! follows a link ([`Spool::remove`], `unlink`). A refusal is reported
//! once the rest is done, the prefetcher stopped first either way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::WalGetError;
use super::plan::{plan_path, request_log_path, spool_path};
use super::progress::{self, ReplayStats};
use super::spool::Spool;
use crate::store::guard;

/// How long a prefetcher gets to notice the end of recovery by itself.
const GRACE: Duration = Duration::from_secs(3);

/// What the plan file's name ends with after the data directory's.
const PLAN_SUFFIX: &str = ".walwarden-wal-get.json";

/// Stops what still runs for the plan at `plan_path`, removes its spool,
/// request log and plan file, and returns the replay's totals. The plan
/// must be named `<data>.walwarden-wal-get.json` (as [`plan_path`] names
/// it): the other paths are derived from that name, not read from the file.
pub fn finish(plan_path: &Path) -> Result<ReplayStats, WalGetError> {
    let data_dir = data_dir_of(plan_path).ok_or_else(|| WalGetError::PlanInvalid {
        path: plan_path.to_owned(),
        reason: format!(
            "not named <data>{PLAN_SUFFIX}: the spool and request log to remove are found from that name"
        ),
    })?;
    stop_prefetcher(plan_path);
    let spool_dir = spool_path(&data_dir);
    let request_log = request_log_path(&data_dir);
    let stats = progress::read(&request_log)
        .map(|records| progress::summarize(&records))
        .unwrap_or_default();
    let spool = Spool::new(&spool_dir);
    let removals = [
        remove(&spool_dir, "the wal-get spool", || spool.remove()),
        remove(&request_log, "the wal-get request log", || {
            unlink(&request_log)
        }),
        remove(plan_path, "the wal-get plan", || unlink(plan_path)),
    ];
    match removals.into_iter().find_map(Result::err) {
        Some(error) => Err(error),
        None => Ok(stats),
    }
}

/// The data directory whose plan `plan_path` is, when it is named as one.
/// The data directory a plan named `<data>.walwarden-wal-get.json` serves.
pub fn data_dir_of(plan: &Path) -> Option<PathBuf> {
    let name = plan.file_name()?.to_str()?;
    let data = name.strip_suffix(PLAN_SUFFIX).filter(|d| !d.is_empty())?;
    let data_dir = plan.with_file_name(data);
    (plan_path(&data_dir) == plan).then_some(data_dir)
}

/// Runs `removal` on `path` once the guard lets it (`what` names it in a refusal).
fn remove(
    path: &Path,
    what: &str,
    removal: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), WalGetError> {
    guard::check_write(path, what)?;
    removal().map_err(|source| WalGetError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Removes the name `path` (a link itself, never its target); a missing one is fine.
fn unlink(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn stop_prefetcher(plan_path: &Path) {
    let mut deadline = Instant::now() + GRACE;
    let mut signalled = false;
    loop {
        let running = prefetchers_of(plan_path);
        if running.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            if signalled {
                return;
            }
            for pid in running {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            signalled = true;
            deadline = Instant::now() + GRACE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes running `wal-get --plan <plan_path> --prefetch`: found by
/// their command line (the plan path is this restore's alone), never by a
/// program name or by a pid that may have been reused. The spool's lock
/// would miss one that has just started and not taken it yet.
fn prefetchers_of(plan_path: &Path) -> Vec<u32> {
    let plan = plan_path.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&&b"--prefetch"[..]) && args.contains(&plan) && !is_zombie(*pid)
        })
        .collect()
}

/// An exited process its parent has not reaped: dead, whatever `/proc` lists.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|s| s == "Z" || s == "X")
        })
        .unwrap_or(true)
}
