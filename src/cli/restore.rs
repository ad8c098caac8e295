//! `walwarden restore CLIENT --data-dir DIR`: the restore engine driven
//! line by line. Without `--yes` it asks before each destructive step;
//! `--dry-run` prints every command and file change and changes nothing.
//!
//! Ctrl-C: before the restored server is started it ends walwarden at once
//! (the journal says which step was cut short: `--resume` or `--rollback`).
//! Once the server runs, the engine is asked to stop instead: it stops that
//! server (fast shutdown) and its `wal-get` helper, then the restore exits
//! 130, interrupted, with nothing of it left running.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use color_eyre::eyre::Result;

use crate::archive::catalog::{self, ScanOptions};
use crate::config::Config;
use crate::display::{escape_path, escape_text, short_duration};
use crate::ops::restore::error::RestoreError;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::request::RestoreRequest;
use crate::ops::restore::steps::{self, Driver, StepKind};
use crate::ops::walget::progress::ReplayProgress;

use super::failure::Failure;

/// Exit code: the restore started and did not complete (see its journal).
const NOT_COMPLETED: i32 = 1;
/// Exit code: refused before anything was changed.
const REFUSED: i32 = 3;
/// Exit code: stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
const INTERRUPTED: i32 = 130;

/// How often the CLI prints the replay's progress line.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The client folder under the root
    pub client: String,
    /// Undo an interrupted or failed restore of --data-dir: put the moved-aside contents back
    #[arg(long)]
    pub rollback: bool,
    /// Go on from where an interrupted restore stopped (its journal says what was done)
    #[arg(long, conflicts_with_all = ["rollback", "purge"])]
    pub resume: bool,
    /// The data directory to restore into (its contents are moved aside first);
    /// default: the client's `data_dir` in the config, else what the running local server says
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop replay at this time (point-in-time recovery), e.g. "2026-11-25 13:28:18+00"
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Follow this timeline to its end instead of the production line (the one
    /// the newest WAL continues), e.g. to bring back a branch on purpose
    #[arg(long, value_name = "N")]
    pub timeline: Option<u32>,
    /// PostgreSQL binaries to restore with (default /usr/lib/postgresql/<major>/bin)
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// The OS user PostgreSQL runs as
    #[arg(long, default_value = crate::ops::restore::request::DEFAULT_OS_USER)]
    pub os_user: String,
    /// A setting for the restored instance, e.g. --set port=5433 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Answer yes to every confirmation (not to --purge's typed one)
    #[arg(long)]
    pub yes: bool,
    /// Print every command and file change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Delete the data directory's contents instead of moving them aside
    #[arg(long)]
    pub purge: bool,
    /// The client name, typed in advance, for --purge without a terminal
    #[arg(long, value_name = "CLIENT")]
    pub confirm_purge: Option<String>,
    /// Go past a preflight check that refused (archive-readable, wal-line, host-settings, unsafe-settings), knowing what it warned of
    #[arg(long, value_name = "CHECK", value_parser = clap::builder::PossibleValuesParser::new(crate::ops::restore::request::FORCEABLE_CHECKS))]
    pub force: Vec<String>,
    /// Starts the local instance (shell; {data} {log} {major} {pg_bin}); default: pg_ctlcluster for a Debian cluster on the data dir, else pg_ctl
    #[arg(long, value_name = "COMMAND")]
    pub start_command: Option<String>,
    /// Stops the local instance (shell, same placeholders)
    #[arg(long, value_name = "COMMAND")]
    pub stop_command: Option<String>,
    /// The log the start command writes, followed during replay (default DATA/log/walwarden-restore.log)
    #[arg(long, value_name = "FILE")]
    pub server_log: Option<PathBuf>,
    /// How long to follow the log for replay to finish [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub replay_timeout: Option<Duration>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    crate::ops::restore::recovery_conf::parse_set(text).map_err(|e| e.to_string())
}

struct LineDriver {
    yes: bool,
    typed: Option<String>,
    interactive: bool,
    dry_run: bool,
    last_progress_line: Option<Instant>,
}

impl LineDriver {
    fn ask(&self, question: &str) -> Option<String> {
        if !self.interactive {
            return None;
        }
        eprint!("{} ", escape_text(question));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok()?;
        Some(answer.trim().to_owned())
    }
}

impl Driver for LineDriver {
    fn confirm(&mut self, question: &str) -> bool {
        if self.yes {
            eprintln!("{} yes (--yes)", escape_text(question));
            return true;
        }
        match self.ask(&format!("{question} [y/N]")) {
            Some(answer) => matches!(answer.as_str(), "y" | "Y" | "yes"),
            None => {
                eprintln!(
                    "{} no: not a terminal; pass --yes to confirm",
                    escape_text(question)
                );
                false
            }
        }
    }

    fn confirm_typed(&mut self, prompt: &str, expected: &str) -> bool {
        if let Some(typed) = &self.typed {
            return typed == expected;
        }
        self.ask(&format!("{prompt}:"))
            .is_some_and(|a| a == expected)
    }

    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        let index = StepKind::ALL
            .iter()
            .position(|s| *s == step)
            .map_or(0, |i| i + 1);
        let mark = match outcome {
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
            Outcome::Started => "started",
            Outcome::DryRun => "dry run",
        };
        eprintln!(
            "[{index}/{}] {} — {mark}: {}",
            StepKind::ALL.len(),
            step.title(),
            escape_text(detail)
        );
        super::interrupt::arm_on(step, &outcome, self.dry_run);
    }

    fn replay_progress(&mut self, progress: &ReplayProgress) {
        if self
            .last_progress_line
            .is_some_and(|at| at.elapsed() < PROGRESS_LINE_EVERY)
        {
            return;
        }
        self.last_progress_line = Some(Instant::now());
        eprintln!("    replay: {}", escape_text(&progress.text()));
    }

    fn interrupted(&mut self) -> bool {
        super::interrupt::requested()
    }

    fn command(&mut self, text: &str) {
        eprintln!("    $ {}", escape_text(text));
    }

    fn progress(&mut self, _step: StepKind, text: &str) {
        eprintln!("    {}", escape_text(text));
    }
}

/// The data directory: given, configured, or asked from the running server
/// as the tutorial does (`show data_directory`, as the PostgreSQL user).
fn data_dir(args: &RestoreArgs, config: &Config) -> Result<PathBuf> {
    if let Some(dir) = &args.data_dir {
        return Ok(dir.clone());
    }
    if let Some(dir) = &config.policy_for(&args.client).data_dir {
        eprintln!("data directory {} (from the config)", dir.display());
        return Ok(dir.clone());
    }
    let asked = crate::pg::local::PgUser::lookup(&args.os_user)
        .ok()
        .and_then(|user| {
            let mut psql = user.command("psql");
            psql.args(["-X", "-A", "-t", "-c", "show data_directory"]);
            let output = psql.output().ok().filter(|o| o.status.success())?;
            let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            (!text.is_empty()).then(|| PathBuf::from(text))
        });
    match asked {
        Some(dir) => {
            eprintln!(
                "data directory {} (from the running server: show data_directory)",
                dir.display()
            );
            Ok(dir)
        }
        None => Err(Failure::new(format!(
            "no data directory to restore {} into: none was given or configured, and no local PostgreSQL answered `show data_directory`",
            args.client
        ))
        .hint(format!(
            "pass --data-dir DIR, set data_dir under [clients.{}] in the config, or start the local PostgreSQL so walwarden can ask it",
            args.client
        ))
        .code(REFUSED)
        .into()),
    }
}

/// The request the arguments ask for: the core's defaults for this client
/// (`RestoreRequest::new`, the wizard's too), then what the flags change.
pub fn request_for(args: &RestoreArgs, config: &Config, data_dir: PathBuf) -> RestoreRequest {
    let mut request = RestoreRequest::new(config, &args.client, data_dir);
    request.target_time = args.target_time.clone();
    request.timeline = args.timeline;
    request.pg_bin = args.pg_bin.clone();
    request.os_user = args.os_user.clone();
    request.settings = args.settings.clone();
    request.dry_run = args.dry_run;
    request.purge = args.purge;
    if let Some(timeout) = args.replay_timeout {
        request.replay_timeout = timeout;
    }
    // The flags win over the config's [clients.NAME.local] lines, one by one.
    let local = &mut request.local;
    local.start = args.start_command.clone().or(local.start.take());
    local.stop = args.stop_command.clone().or(local.stop.take());
    local.log = args.server_log.clone().or(local.log.take());
    request.forced = args.force.clone();
    request.resume = args.resume;
    request
}

pub fn run(args: &RestoreArgs, root: &Path, config: &Config) -> Result<i32> {
    // Absolute from the start: the journal, the messages and the server agree on it.
    let data_dir = data_dir(args, config)?;
    let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    if args.rollback {
        return match crate::ops::restore::journal::roll_back(&data_dir) {
            Ok(failed) => {
                println!(
                    "rolled back {}: the old contents are back; the failed restore's files are in {}",
                    data_dir.display(),
                    failed.display()
                );
                Ok(0)
            }
            Err(error) => Err(Failure::new(format!("rollback refused: {error}"))
                .code(REFUSED)
                .into()),
        };
    }
    if args.purge && args.dry_run {
        eprintln!("note: --dry-run: nothing will be deleted");
    }
    let client = catalog::scan_client(root, &args.client, &ScanOptions::default())
        .map_err(super::catalog_failure)?;
    let request = request_for(args, config, data_dir.clone());
    let mut driver = LineDriver {
        yes: args.yes,
        typed: args.confirm_purge.clone(),
        interactive: std::io::stdin().is_terminal(),
        dry_run: args.dry_run,
        last_progress_line: None,
    };
    let result = steps::run(&client, &request, &mut driver);
    super::interrupt::stops_the_server(false);
    match result {
        Ok(summary) => {
            let times: Vec<String> = summary
                .step_times
                .iter()
                .map(|(step, took)| format!("{} {}", step.id(), short_duration(*took)))
                .collect();
            println!(
                "restore of {} into {}: {}",
                client.name,
                escape_path(&data_dir),
                if args.dry_run {
                    "dry run complete, nothing changed"
                } else {
                    "done"
                }
            );
            if let Some(aside) = &summary.moved_aside_to {
                println!("old contents moved to {}", escape_path(aside));
            }
            if let Some(last) = &summary.last_replayed_transaction {
                println!("last replayed transaction: {last}");
            }
            println!("steps: {}", times.join(", "));
            if !args.dry_run {
                println!("phases: {}", summary.phases.text());
            }
            if let Some(note) = &summary.helper_note {
                println!("note: {}", escape_text(note));
            }
            println!("journal: {}", escape_path(&summary.journal));
            Ok(0)
        }
        Err(error @ RestoreError::Interrupted { .. }) => Err(Failure::new(format!(
            "the restore of {} into {} was {error}",
            client.name,
            data_dir.display()
        ))
        .hint(format!(
            "its journal {} says which steps finished",
            crate::ops::restore::journal::Journal::path_for(&data_dir).display()
        ))
        .code(INTERRUPTED)
        .into()),
        Err(RestoreError::Preflight(why)) => {
            let (what, hint) = preflight_hint(&why.to_string());
            Err(Failure::new(format!(
                "preflight refused the restore of {}: {what}",
                client.name
            ))
            .hint(hint)
            .code(REFUSED)
            .into())
        }
        Err(error) => Err(Failure::new(format!(
            "the restore of {} into {} did not complete: {error}",
            client.name,
            data_dir.display()
        ))
        .hint(format!(
            "its journal {} says which steps finished: run the same command with --resume to go on from there, or with --rollback to put the old contents back",
            crate::ops::restore::journal::Journal::path_for(&data_dir).display()
        ))
        .code(NOT_COMPLETED)
        .into()),
    }
}

/// A preflight refusal split into what is wrong and what to do: the
/// engine's "Fix:" when it gives one, else the fix for the refusals people
/// meet most, else the general one.
fn preflight_hint(why: &str) -> (String, String) {
    if let Some((what, fix)) = why.split_once(". Fix: ") {
        return (what.to_owned(), fix.to_owned());
    }
    let hint = if why.contains("the backup root") {
        "restore into the local PostgreSQL's data directory (e.g. /var/lib/postgresql/15/main), which must be outside the backup root; nothing was changed"
    } else {
        "preflight changes nothing: fix what it names and run the same command again (--dry-run shows every step first)"
    };
    (why.to_owned(), hint.to_owned())
}

#[cfg(test)]
mod tests {
    use super::preflight_hint;

    #[test]
    fn a_refusal_with_a_fix_is_split_into_error_and_hint() {
        let (what, hint) = preflight_hint(
            "the WAL archive /r/c/wal is not readable by postgres: PostgreSQL would stop early. Fix: chmod -R g+rX through a group",
        );
        assert_eq!(
            what,
            "the WAL archive /r/c/wal is not readable by postgres: PostgreSQL would stop early"
        );
        assert_eq!(hint, "chmod -R g+rX through a group");
        let (what, hint) =
            preflight_hint("/r/x is inside the backup root /r: the archive is never written to");
        assert!(what.ends_with("never written to"));
        assert!(hint.contains("outside the backup root"), "{hint}");
    }
}
