//! What background work is running or has reported, as the screens show
//! it: each client's deep check and drill, its target server's last read,
//! and the verification window's checks. Asking for work returns commands;
//! results arrive as events. No I/O here.

use std::time::{Duration, SystemTime};

use super::{App, Command, Screen};
use crate::archive::catalog::{Applied, Observation};
use crate::checks::deep::DeepReport;
use crate::checks::drills::DrillRecord;
use crate::checks::verify::Verification;
use crate::pg::target::TargetView;

/// A deep check or drill of one client, as the detail screen shows it.
#[derive(Debug, Clone, Default)]
pub struct ClientJobs {
    /// Files read of files to read, while a deep check runs.
    pub deep_progress: Option<(u64, u64)>,
    pub deep: Option<Result<DeepReport, String>>,
    /// `deep` comes from earlier checks' memory, not from a check run here.
    pub deep_from_memory: bool,
    pub drill_running: bool,
    /// What the running (or last) drill said, newest last.
    pub drill_lines: Vec<String>,
    pub drill: Option<DrillRecord>,
}

/// A question that must be answered yes or no before `commands` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    pub commands: Vec<Command>,
}

/// A client's target server as the detail screen shows it.
#[derive(Debug, Clone, Default)]
pub struct TargetEntry {
    pub reading: bool,
    pub read_at: Option<SystemTime>,
    pub view: Option<TargetView>,
}

/// A target read this recently is not read again when the detail opens (`t` forces it).
const TARGET_FRESH_FOR: Duration = Duration::from_secs(60);

impl App {
    /// After a verification window whose client has a target: read it every
    /// 10 s until archive_timeout is back to production.
    pub(super) fn verification_target_reads(&mut self) -> Vec<Command> {
        let Some(v) = &self.verification else {
            return Vec::new();
        };
        if !v.target_expected || !v.is_over(self.now) || v.target_settled() {
            return Vec::new();
        }
        let client = v.client.clone();
        let due = self
            .targets
            .get(&client)
            .and_then(|t| t.read_at)
            .and_then(|at| self.now.duration_since(at).ok())
            .is_none_or(|age| age >= Duration::from_secs(10))
            || v.target.is_none();
        if due {
            self.read_target(&client, true)
        } else {
            Vec::new()
        }
    }

    /// Reads `client`'s target server unless it was read a moment ago (or `force`).
    pub(super) fn read_target(&mut self, client: &str, force: bool) -> Vec<Command> {
        let Some(target) = self.config.target_for(client) else {
            return Vec::new();
        };
        let entry = self.targets.entry(client.to_owned()).or_default();
        let fresh = entry
            .read_at
            .and_then(|at| self.now.duration_since(at).ok())
            .is_some_and(|age| age < TARGET_FRESH_FOR);
        if entry.reading || (fresh && !force) {
            return Vec::new();
        }
        entry.reading = true;
        vec![Command::ReadTarget {
            client: client.to_owned(),
            target: Box::new(target.clone()),
        }]
    }

    pub(super) fn on_target_read(&mut self, client: String, view: TargetView) -> Vec<Command> {
        if let Some(v) = &mut self.verification
            && v.client == client
        {
            if v.is_over(self.now) {
                v.target_read(self.now, view.clone());
            } else {
                v.target_read_at_start(&view);
            }
        }
        let entry = self.targets.entry(client).or_default();
        entry.reading = false;
        entry.read_at = Some(self.now);
        entry.view = Some(view);
        self.rebuild_rows();
        Vec::new()
    }

    /// Applies a batch of observed file changes to the catalog, then
    /// recomputes derived facts once.
    pub(super) fn on_observations(&mut self, observations: Vec<Observation>) -> Vec<Command> {
        let Some(catalog) = &mut self.catalog else {
            // The first scan is still running and will see these files.
            return Vec::new();
        };
        let mut commands = Vec::new();
        for observation in &observations {
            self.events_applied += 1;
            match catalog.apply(observation) {
                Applied::Nothing => {}
                Applied::Changed { client, arrival } => {
                    let Some(arrival) = arrival else { continue };
                    if let Some(v) = &self.verification
                        && v.client == client
                        && v.wants(&arrival.name)
                        && !v.is_over(arrival.at)
                    {
                        let path = catalog
                            .client(&client)
                            .map(|c| c.wal_dir().join(&arrival.name));
                        commands.extend(path.map(|path| Command::CheckSegment {
                            path,
                            seen_at: arrival.at,
                        }));
                    }
                }
                Applied::RescanClient(name) => {
                    let command = Command::RescanClient(name);
                    if !commands.contains(&command) {
                        commands.push(command);
                    }
                }
                Applied::RescanAll(_) => {
                    if !commands.contains(&Command::Rescan) {
                        commands.push(Command::Rescan);
                    }
                }
            }
        }
        catalog.refresh();
        self.rebuild_rows();
        commands
    }

    /// Opens the verification window on a client: the base check starts at once.
    pub(super) fn start_verification(&mut self, name: &str) -> Vec<Command> {
        let Some(client) = self.catalog.as_ref().and_then(|c| c.client(name)) else {
            return Vec::new();
        };
        let mut verification = Verification::new(client, self.verify_settings, self.now);
        verification.target_expected = self.config.target_for(name).is_some();
        let base_dir = client.base_dir();
        self.verification = Some(verification);
        self.screen = Screen::Verify;
        let mut commands = vec![Command::CheckBase(base_dir)];
        commands.extend(self.read_target(name, true));
        commands
    }

    /// After a rescan of the verified client (events were lost, or its folder
    /// changed): the new segments no event announced are checked too, timed
    /// by their mtime, as `walwarden verify` does.
    pub(super) fn verification_missed_segments(&self) -> Vec<Command> {
        let Some(v) = &self.verification else {
            return Vec::new();
        };
        let Some(client) = self.catalog.as_ref().and_then(|c| c.client(&v.client)) else {
            return Vec::new();
        };
        v.missed_segments(client)
            .into_iter()
            .map(|(path, seen_at)| Command::CheckSegment { path, seen_at })
            .collect()
    }

    /// A background job died: its screen stops waiting for it.
    pub(super) fn job_failed(&mut self, job: &Command) {
        match job {
            Command::DeepCheck(client) => {
                let job = self.jobs.entry(client.clone()).or_default();
                job.deep_progress = None;
            }
            Command::Drill(client) => {
                self.jobs.entry(client.clone()).or_default().drill_running = false;
            }
            Command::ReadTarget { client, .. } => {
                self.targets.entry(client.clone()).or_default().reading = false;
            }
            Command::Rescan => self.scanning = false,
            Command::PlanSetup(_) => {
                if let Some(screen) = &mut self.onboarding {
                    screen.planned(Err("planning failed unexpectedly".into()));
                }
            }
            Command::ApplySetup(..) => {
                if let Some(screen) = &mut self.onboarding {
                    screen.applied(false, vec!["applying failed unexpectedly".into()]);
                }
            }
            Command::ProposeSettings {
                client, data_dir, ..
            } => {
                if let Some(wizard) = self.wizard.as_mut().filter(|w| &w.client == client) {
                    // No start behind the engineer's back after a bug: Enter again starts.
                    wizard.start_when_proposed = false;
                    let none = wizard.proposed(
                        data_dir,
                        Err("working out the settings failed unexpectedly".into()),
                    );
                    debug_assert!(none.is_none());
                }
            }
            Command::StartRestore { .. } => {
                if let Some(wizard) = &mut self.wizard {
                    wizard.on_event(crate::tui::wizard::RestoreEvent::Finished(Err(
                        "the restore failed unexpectedly".into(),
                    )));
                }
            }
            Command::RescanClient(_)
            | Command::CheckBase(_)
            | Command::CheckSegment { .. }
            | Command::AnswerRestore(_)
            | Command::Quit => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::Event;

    #[test]
    fn a_job_that_died_is_reported_and_its_screen_stops_waiting() {
        let mut app = App::new(
            "/b".into(),
            crate::config::Config::default(),
            SystemTime::UNIX_EPOCH,
        );
        app.jobs.entry("acme".into()).or_default().deep_progress = Some((3, 10));
        app.jobs.entry("acme".into()).or_default().drill_running = true;
        app.update(Event::JobFailed {
            job: Command::DeepCheck("acme".into()),
            message: "index out of bounds".into(),
        });
        let job = &app.jobs["acme"];
        assert_eq!(job.deep_progress, None, "no gauge stuck at 30%");
        assert!(job.drill_running, "only the failed job's state is cleared");
        let error = app.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("index out of bounds"), "{error}");
    }
}
