//! Step 2, the old instance on the target server: stopped over SSH (strict
//! host keys) when the client's config names it and the engineer agrees;
//! never a reason to fail the restore.

use std::path::PathBuf;

use super::{Checked, Driver, Runner, StepKind};
use crate::ops::restore::error::RestoreError;
use crate::ops::restore::journal::{Journal, Outcome};
use crate::ops::restore::request::RestoreRequest;
use crate::pg::remote;

impl Runner<'_> {
    pub(super) fn stop_remote(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        stop_remote(self.request, checked.major, self.driver, self.journal)
    }
}

/// The stop-old-instance step alone, as `run` does it after the preflight
/// (`major`: the backup's), journaled beside the data directory. Returns the journal's path.
pub fn stop_old_instance(
    request: &RestoreRequest,
    major: u32,
    driver: &mut dyn Driver,
) -> Result<PathBuf, RestoreError> {
    let mut journal = Journal::open(&request.data_dir, request.dry_run).map_err(|source| {
        RestoreError::Journal {
            path: Journal::path_for(&request.data_dir),
            source,
        }
    })?;
    stop_remote(request, major, driver, &mut journal)?;
    Ok(journal.path().to_owned())
}

/// Stops PostgreSQL on the client's old server over SSH, when configured and
/// confirmed. Never fails the restore: the old server is often gone (that is
/// why there is a restore), so unreachable, declined or refused is a skip
/// whose reason goes into the journal. A host key that does not check out
/// is called REFUSED: nothing was sent to that server.
fn stop_remote(
    request: &RestoreRequest,
    major: u32,
    driver: &mut dyn Driver,
    journal: &mut Journal,
) -> Result<(), RestoreError> {
    let step = StepKind::StopRemote;
    let mut record = |driver: &mut dyn Driver, outcome: Outcome, detail: &str| {
        journal
            .record(step.id(), outcome.clone(), detail, None)
            .map_err(|source| RestoreError::Journal {
                path: journal.path().to_owned(),
                source,
            })?;
        driver.step(step, outcome, detail);
        Ok(())
    };
    let Some(target) = &request.target else {
        return record(
            driver,
            Outcome::Skipped,
            "no target server configured for this client: make sure the old server is down (or name it under [clients.NAME.target] in the config)",
        );
    };
    let address = target.address();
    let command = target.stop_command_for(major);
    let question = format!("Stop PostgreSQL on {address} with `{command}`?");
    if request.dry_run {
        driver.progress(step, &format!("(dry run) would ask: {question}"));
        driver.command(&remote::ssh_command_text(target, &command));
        return record(
            driver,
            Outcome::DryRun,
            &format!("would stop PostgreSQL on {address} (not connected in a dry run)"),
        );
    }
    if !driver.confirm(&question) {
        return record(
            driver,
            Outcome::Skipped,
            &format!(
                "declined: PostgreSQL on {address} was not stopped; make sure it is down before the restored server takes its place"
            ),
        );
    }
    driver.command(&remote::ssh_command_text(target, &command));
    match remote::run_remote_blocking(target, &command) {
        Ok(output) => {
            let text = one_line(&(output.stdout + "\n" + &output.stderr));
            let said = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            record(
                driver,
                Outcome::Done,
                &format!("stopped PostgreSQL on {address}{said}"),
            )
        }
        Err(error) if error.is_host_key() => {
            let detail = format!(
                "REFUSED: {error}. Nothing was run on {address}: make sure the old server is down"
            );
            driver.progress(step, &detail);
            record(driver, Outcome::Skipped, &detail)
        }
        Err(error) => record(
            driver,
            Outcome::Skipped,
            &format!("not stopped: {error}; make sure the old server is down"),
        ),
    }
}

/// A command's output on one line for the journal, cut to a readable length.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match joined.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}
