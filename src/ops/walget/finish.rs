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

use std::path::Path;
use std::time::{Duration, Instant};

use super::WalGetError;
use super::plan::WalGetPlan;
use super::progress::{self, ReplayStats};
use super::spool::Spool;

/// How long a prefetcher gets to notice the end of recovery by itself.
const GRACE: Duration = Duration::from_secs(3);

/// Stops what still runs for the plan at `plan_path`, removes its spool,
/// request log and plan file, and returns the replay's totals.
pub fn finish(plan_path: &Path) -> Result<ReplayStats, WalGetError> {
    let plan = WalGetPlan::load(plan_path)?;
    stop_prefetcher(plan_path);
    let spool = Spool::new(&plan.spool_dir);
    spool.remove().map_err(|source| WalGetError::Write {
        path: plan.spool_dir.clone(),
        source,
    })?;
    let stats = progress::read(&plan.request_log)
        .map(|records| progress::summarize(&records))
        .unwrap_or_default();
    for path in [&plan.request_log, &plan_path.to_path_buf()] {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(WalGetError::Write {
                    path: path.clone(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(stats)
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
