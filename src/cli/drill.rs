//! `walwarden drill CLIENT`: restore the client's backup into a scratch
//! directory, check the restored server answers, remove it, record the result.

use std::path::{Path, PathBuf};

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};

use crate::archive::catalog::{self, ScanOptions};
use crate::ops::drill::{append_history, default_history_path, drill};
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::steps::{Driver, StepKind};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The client folder under the root
    pub client: String,
    /// Where the scratch data directory is made (and removed afterwards)
    #[arg(long, default_value = "/var/tmp", value_name = "DIR")]
    pub scratch: PathBuf,
    /// The OS user PostgreSQL runs as
    #[arg(long, default_value = "postgres")]
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
        if !self.json {
            eprintln!("{} — {outcome:?}: {detail}", step.title());
        }
    }
    fn command(&mut self, _text: &str) {}
    fn progress(&mut self, _step: StepKind, _text: &str) {}
}

pub fn run(args: &DrillArgs, root: &Path) -> Result<i32> {
    let client = catalog::scan_client(root, &args.client, &ScanOptions::default())
        .wrap_err("cannot read the client")?;
    let record = drill(
        &client,
        &args.scratch,
        &args.os_user,
        args.pg_bin.clone(),
        &mut Quiet { json: args.json },
    );
    if let Some(history) = default_history_path() {
        append_history(&history, &record)
            .wrap_err_with(|| format!("cannot record the drill in {}", history.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let verdict = if record.success { "PASS" } else { "FAIL" };
        println!(
            "drill of {}: {verdict} in {:.1} s: {}",
            record.client, record.seconds, record.detail
        );
        if let Some(reached) = &record.reached {
            println!("restored to the transaction of {reached}");
        }
    }
    Ok(if record.success { 0 } else { 1 })
}
