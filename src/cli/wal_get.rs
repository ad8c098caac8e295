//! `walwarden wal-get --plan PLAN %f %p`: the restore_command face of
//! [`crate::ops::walget`]. PostgreSQL runs it as its own OS user from the
//! data directory; it reads no walwarden configuration. Every outcome is an
//! exit status PostgreSQL reads as "handed over" (0) or "not available" (1),
//! with at most one line on stderr (the server log). `--prefetch` is the
//! detached prefetcher the first request starts; `--status` prints the
//! replay's progress for people.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;

use crate::ops::walget::plan::WalGetPlan;
use crate::ops::walget::{prefetch, progress, serve};
use crate::pg::pglog::walget_line::{RefusalCode, WalGetLine};

#[derive(Debug, Args)]
pub struct WalGetArgs {
    /// The plan the restore wrote beside the data directory (<data>.walwarden-wal-get.json)
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Run as the prefetcher (the first request starts it)
    #[arg(long, hide = true, conflicts_with_all = ["status", "file", "dest"])]
    pub prefetch: bool,
    /// Print the replay's progress from the request log and exit
    #[arg(long, conflicts_with_all = ["file", "dest"])]
    pub status: bool,
    /// After the restored server left recovery: stop the prefetcher, print
    /// the replay's totals, remove the plan, spool and request log
    #[arg(long, conflicts_with_all = ["status", "prefetch", "file", "dest"])]
    pub finish: bool,
    /// %f: the WAL file PostgreSQL asks for
    #[arg(value_name = "FILE", required_unless_present_any = ["prefetch", "status", "finish"])]
    pub file: Option<String>,
    /// %p: where to put it, relative to the data directory
    #[arg(value_name = "PATH", required_unless_present_any = ["prefetch", "status", "finish"])]
    pub dest: Option<PathBuf>,
}

/// The exit status; never an error: PostgreSQL must read 0 or 1.
pub fn run(args: &WalGetArgs) -> i32 {
    if args.prefetch {
        // Before anything is opened: see `close_inherited_descriptors`.
        prefetch::close_inherited_descriptors();
        prefetch::install_stop_handlers();
        return match WalGetPlan::load(&args.plan) {
            Ok(plan) => {
                prefetch::run(&plan);
                0
            }
            Err(_) => 1,
        };
    }
    if args.finish {
        return finish(&args.plan);
    }
    let file = args.file.as_deref().unwrap_or_default();
    let plan = match WalGetPlan::load(&args.plan) {
        Ok(plan) => plan,
        Err(e) => {
            let line = WalGetLine::refused(
                if file.is_empty() { "-" } else { file },
                RefusalCode::HelperFailed,
                &e.to_string(),
            );
            eprintln!("{line}");
            return 1;
        }
    };
    if args.status {
        let records = progress::read(&plan.request_log).unwrap_or_default();
        println!(
            "{}",
            progress::progress(&plan, &records, SystemTime::now()).text()
        );
        return 0;
    }
    let Some(dest) = &args.dest else {
        return 1;
    };
    let mut start = || {
        // A prefetcher that cannot start only costs speed: requests are served anyway.
        if let Ok(exe) = std::env::current_exe() {
            let _ = prefetch::spawn(&exe, &args.plan);
        }
    };
    let answer = serve::serve(&plan, file, dest, &mut start);
    if let Some(line) = answer.log_line(file) {
        eprintln!("{line}");
    }
    answer.exit_code()
}

/// `--finish`: refused while the plan's server is still recovering (it
/// would lose its restore_command mid-replay).
fn finish(plan_path: &std::path::Path) -> i32 {
    // The data directory the plan's own name says, not what the file holds.
    use crate::ops::walget::{finish::data_dir_of, plan::recovery_in_progress};
    if let Some(data_dir) = data_dir_of(plan_path)
        && recovery_in_progress(&data_dir)
        && crate::pg::local::postmaster_alive(&data_dir)
    {
        eprintln!(
            "walwarden wal-get --finish: {} is still in recovery and its server runs: promote it first (select pg_wal_replay_resume()), then finish",
            crate::display::escape_path(&data_dir)
        );
        return 1;
    }
    match crate::ops::walget::finish::finish(plan_path) {
        Ok(stats) => {
            let phase = crate::ops::phases::ReplayPhase::from_stats(&stats);
            let times = crate::ops::phases::PhaseTimes {
                replay: phase,
                ..Default::default()
            };
            println!(
                "{}",
                if phase.is_some() {
                    times.text()
                } else {
                    "no segment was handed over".to_owned()
                }
            );
            0
        }
        Err(e) => {
            eprintln!("walwarden wal-get --finish: {e}");
            1
        }
    }
}
