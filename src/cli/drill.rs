//! `walwarden drill CLIENT`: restore the client's backup into a scratch
//! directory, check the restored server answers, remove it, record the result.

use std::path::{Path, PathBuf};

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::archive::catalog::{self, ScanOptions};
use crate::checks::drills::{default_history_path, load_history, next_to_drill};
use crate::ops::drill::{DrillRequest, Drilled, drill_client};
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::{Driver, StepKind};

use super::failure::Failure;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["client", "next"])))]
pub struct DrillArgs {
    /// The client folder under the root
    pub client: Option<String>,
    /// Drill the client whose turn it is: one never drilled, else the one drilled longest ago
    #[arg(long)]
    pub next: bool,
    /// Where the scratch data directory is made (and removed afterwards)
    #[arg(long, default_value = crate::ops::drill::DEFAULT_SCRATCH, value_name = "DIR")]
    pub scratch: PathBuf,
    /// The OS user PostgreSQL runs as
    #[arg(long, default_value = crate::ops::restore::request::DEFAULT_OS_USER)]
    pub os_user: String,
    /// PostgreSQL binaries (default /usr/lib/postgresql/<major>/bin)
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// A drill confirms its own steps: it only ever writes in its scratch folder.
struct Quiet {
    json: bool,
}

impl Driver for Quiet {
    fn confirm(&mut self, _question: &str) -> bool {
        true
    }
    fn confirm_typed(&mut self, _prompt: &str, _expected: &str) -> bool {
        false
    }
    fn step(&mut self, step: StepKind, outcome: Outcome, detail: &str) {
        super::interrupt::arm_on(step, &outcome, false);
        if !self.json {
            eprintln!(
                "{} — {outcome:?}: {}",
                step.title(),
                crate::display::escape_text(detail)
            );
        }
    }
    fn command(&mut self, _text: &str) {}
    fn progress(&mut self, _step: StepKind, _text: &str) {}
    fn interrupted(&mut self) -> bool {
        super::interrupt::requested()
    }
}

pub fn run(args: &DrillArgs, root: &Path) -> Result<i32> {
    let name = match &args.client {
        Some(name) => name.clone(),
        None => pick_next(root)?,
    };
    // Refused before anything is made or drilled: the archive is untouchable.
    let scratch = crate::store::guard::check_write(&args.scratch, "--scratch")
        .and_then(|_| {
            std::path::absolute(&args.scratch).map_err(|e| {
                crate::store::guard::GuardError::Unresolvable {
                    what: "--scratch".into(),
                    path: args.scratch.clone(),
                    reason: e.to_string(),
                }
            })
        })
        .map_err(|refused| {
            Failure::new(format!("drill refused: {refused}"))
                .hint("pass --scratch DIR outside the backup root (the default /var/tmp is)")
        })?;
    let request = DrillRequest {
        scratch,
        os_user: args.os_user.clone(),
        pg_bin: args.pg_bin.clone(),
    };
    let Drilled {
        record,
        not_recorded,
    } = drill_client(
        root,
        &name,
        &request,
        default_history_path().as_deref(),
        &mut Quiet { json: args.json },
    )
    .map_err(super::catalog_failure)?;
    super::interrupt::stops_the_server(false);
    if let Some((history, error)) = not_recorded {
        return Err(error)
            .wrap_err_with(|| format!("cannot record the drill in {}", history.display()));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let verdict = if record.success { "PASS" } else { "FAIL" };
        println!(
            "drill of {}: {verdict} in {:.1} s: {}",
            record.client,
            record.seconds,
            crate::display::escape_text(&record.detail)
        );
        if let Some(reached) = &record.reached {
            println!("restored to the transaction of {reached}");
        }
        let phases = record.phases.text();
        if !phases.is_empty() {
            println!("phases: {phases}");
        }
    }
    Ok(if record.success {
        0
    } else if super::interrupt::requested() {
        // Ctrl-C: the restored server was stopped and the scratch removed.
        130
    } else {
        1
    })
}

/// The client whose turn it is, said on stderr with why.
fn pick_next(root: &Path) -> Result<String> {
    let catalog = catalog::scan(root, &ScanOptions::default()).map_err(super::catalog_failure)?;
    let names: Vec<&str> = catalog.clients.iter().map(|c| c.name.as_str()).collect();
    let history = default_history_path()
        .map(|path| load_history(&path))
        .unwrap_or_default();
    let Some(next) = next_to_drill(&names, &history) else {
        return Err(Failure::new(format!("no client to drill under {}", root.display()))
            .hint("walwarden setup CLIENT onboards one; --root or WALWARDEN_ROOT points elsewhere")
            .into());
    };
    let last = history
        .iter()
        .filter(|r| r.client == next)
        .max_by_key(|r| r.at_unix);
    match last {
        Some(record) => eprintln!(
            "next to drill: {next} (last drilled {}, {})",
            record.at,
            if record.success { "passed" } else { "failed" }
        ),
        None => eprintln!("next to drill: {next} (never drilled)"),
    }
    Ok(next.to_owned())
}
