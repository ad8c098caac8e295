//! The restored server's restore_command, `walwarden wal-get`, from the
//! restore's side: its plan written beside the data directory (walwarden's,
//! readable by all; the same line the preflight judged), put back when a
//! resumed restore finds it gone, and ended once the restore is over
//! (`walget::finish`: totals read, prefetcher stopped, spool, request log
//! and plan removed), except while the server is still recovering: then
//! the helper is still its restore_command, and is left alone (the
//! prefetcher stops by itself once requests stop coming).
//!
//! Also the stop on Ctrl-C: the server this restore started is stopped
//! (fast shutdown), so the helper can be ended and nothing keeps running.

use std::time::Duration;

use super::{Checked, Runner, StepKind};
use crate::ops::phases::ReplayPhase;
use crate::ops::restore::error::{RestoreError, StepFailure};
use crate::ops::restore::service::{
    ServiceControl, postmaster_alive, shell, wait_for_pid_file_gone,
};
use crate::ops::walget::{self, progress};

/// How long a failed restore waits for its server to finish exiting.
const DYING_SERVER_GRACE: Duration = Duration::from_secs(10);

impl Runner<'_> {
    /// Writes the preflight's plan for the helper (the recovery-config step).
    pub(super) fn write_helper_plan(&mut self, checked: &Checked) -> Result<(), StepFailure> {
        let path = walget::plan::plan_path(&self.request.data_dir);
        self.driver.command(&format!(
            "write {} (walwarden wal-get's plan, readable by all: the archive, the line of timelines {}, the spool {}, which with the request log is {}'s)",
            path.display(),
            line_text(&checked.helper_plan),
            checked.helper_plan.spool_dir.display(),
            checked.user.name
        ));
        if self.request.dry_run {
            return Ok(());
        }
        crate::store::guard::check_write(&path, "the wal-get plan")
            .and_then(|_| {
                crate::store::guard::check_write(
                    &checked.helper_plan.spool_dir,
                    "the wal-get spool",
                )
            })
            .map_err(|e| StepFailure::Io {
                action: "write",
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        checked
            .helper_plan
            .write(&path, Some((checked.user.uid, checked.user.gid)))?;
        self.plan_path = Some(path);
        Ok(())
    }

    /// On `--resume` past the recovery-config step: the plan the
    /// configuration names, written again if an earlier end removed it
    /// (never rewritten while present: a running server's prefetcher uses
    /// its spool).
    pub(super) fn ensure_helper_plan(&mut self, checked: &Checked) -> Result<(), StepFailure> {
        let path = walget::plan::plan_path(&self.request.data_dir);
        if self.request.dry_run {
            return Ok(());
        }
        if path.exists() {
            self.plan_path = Some(path);
            return Ok(());
        }
        self.write_helper_plan(checked)
    }

    /// Ends the helper after the restore, however it ended; see the module doc.
    /// After a failure the server may be on its way down (a FATAL in the
    /// startup process is logged before the postmaster exits): it gets a
    /// moment to go before it counts as still recovering.
    pub(super) fn end_helper(&mut self, failed: bool) {
        let Some(path) = self.plan_path.clone() else {
            return;
        };
        if !path.exists() {
            return;
        }
        let data = &self.request.data_dir;
        if failed && postmaster_alive(data) {
            wait_for_pid_file_gone(&data.join("postmaster.pid"), DYING_SERVER_GRACE);
        }
        if postmaster_alive(data) && walget::plan::recovery_in_progress(data) {
            // The log this restore's plan names, not whatever the file on disk says.
            let stats = progress::read(&walget::plan::request_log_path(data))
                .ok()
                .map(|records| progress::summarize(&records));
            self.clock
                .set_replay(stats.as_ref().and_then(ReplayPhase::from_stats));
            self.summary.replay_stats = stats;
            let note = format!(
                "the server is still in recovery, so its restore_command (walwarden wal-get, plan {}) stays in place: \
                 its prefetcher stops by itself after a minute without requests; once the server is promoted, \
                 `walwarden wal-get --plan {} --finish` removes the plan, spool and request log",
                path.display(),
                crate::pg::local::shell_quote(&path.to_string_lossy())
            );
            self.driver.progress(StepKind::Report, &note);
            self.summary.helper_note = Some(note);
            return;
        }
        match walget::finish::finish(&path) {
            Ok(stats) => {
                self.clock.set_replay(ReplayPhase::from_stats(&stats));
                if let Some(cpu) = helper_usage(&stats) {
                    self.driver.progress(StepKind::Report, &cpu);
                }
                self.summary.replay_stats = Some(stats);
            }
            Err(error) => {
                let note = format!("cannot clean up after walwarden wal-get: {error}");
                self.driver.progress(StepKind::Report, &note);
                self.summary.helper_note = Some(note);
            }
        }
    }

    /// Ctrl-C while the server this restore started runs: a fast stop (a
    /// restartpoint is kept, so `--resume` replays on from there).
    pub(super) fn stop_for_interrupt(&mut self, checked: &Checked, step: StepKind) -> RestoreError {
        let data = self.request.data_dir.clone();
        self.driver.progress(
            step,
            "interrupted: stopping the restored server (fast shutdown) and the restore_command helper",
        );
        let command = match &checked.service {
            ServiceControl::PgCtl => {
                let mut command = checked.user.command(checked.pg_bin.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(&data)
                    .args(["stop", "-m", "fast", "-w", "-t", "120"]);
                command
            }
            ServiceControl::Commands { stop, .. } => shell(stop),
        };
        let server = match self.exec(step, command) {
            Ok(_) => {
                wait_for_pid_file_gone(&data.join("postmaster.pid"), Duration::from_secs(120));
                if postmaster_alive(&data) {
                    "the restored server did not stop".to_owned()
                } else {
                    "the restored server was stopped".to_owned()
                }
            }
            Err(error) => format!("the restored server could not be stopped ({error})"),
        };
        RestoreError::Interrupted {
            step: step.id(),
            server,
        }
    }
}

/// `1 -> 2 (from 0/3000000)`: the timelines the plan follows.
fn line_text(plan: &walget::WalGetPlan) -> String {
    plan.line
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == 0 {
                t.timeline.to_string()
            } else {
                format!("{} (from {})", t.timeline, t.begin)
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// `wal-get: 130 segments (120 prefetched), 2.1 s of CPU, 14 MB peak memory`.
fn helper_usage(stats: &progress::ReplayStats) -> Option<String> {
    (stats.segments > 0).then(|| {
        format!(
            "wal-get handed over {} segments ({} prefetched), {:.1} s of CPU, {} MB peak memory{}",
            stats.segments,
            stats.from_spool,
            stats.helper_cpu_us as f64 / 1e6,
            stats.helper_max_rss_kb / 1024,
            if stats.refused.is_empty() {
                String::new()
            } else {
                format!(
                    "; refused: {}",
                    stats
                        .refused
                        .iter()
                        .map(|(file, code)| format!("{file} ({code})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )
    })
}
