//! Steps 7 to 9, the restored server: start it, follow its log while WAL
//! replays (each line classified, an early stop reported as a failure), and
//! ask it where replay ended.

use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use super::{Checked, Runner, StepKind, fail};
use crate::archive::continuity::Continuity;
use crate::ops::phases::Phase;
use crate::ops::restore::error::{RestoreError, StepFailure};
use crate::ops::restore::recovery_conf::TargetTime;
use crate::ops::restore::replay::ReplayTracker;
use crate::ops::restore::replay::Verdict;
use crate::ops::restore::service::{ServiceControl, shell};
use crate::ops::walget::progress::ProgressFollower;

/// How often the helper's progress is read while replay runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Runner<'_> {
    pub(super) fn start(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        // A shared log (Debian's) already holds other runs: follow it from here.
        self.log_offset = fs::metadata(&checked.log).map_or(0, |m| m.len());
        let command = match &checked.service {
            ServiceControl::PgCtl => {
                let mut command = checked.user.command(checked.pg_bin.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(&self.request.data_dir)
                    .arg("-l")
                    .arg(&checked.log)
                    .args(["-W", "start"]);
                command
            }
            ServiceControl::Commands { start, why, .. } => {
                self.driver
                    .progress(StepKind::Start, &format!("start command: {why}"));
                shell(start)
            }
        };
        self.exec(StepKind::Start, command)?;
        self.summary.log = Some(checked.log.clone());
        let verb = if self.request.dry_run {
            "would start"
        } else {
            "started"
        };
        self.done(
            StepKind::Start,
            &format!("{verb}; log in {}", checked.log.display()),
        )
    }

    pub(super) fn follow_log(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        if self.request.dry_run {
            return self.done(
                StepKind::FollowLog,
                &format!("would follow {}", checked.log.display()),
            );
        }
        let mut tracker = ReplayTracker::new(checked.line.segment_size);
        let target: Option<TargetTime> = checked.target;
        let deadline = Instant::now() + self.request.replay_timeout;
        let mut offset = self.log_offset;
        let mut partial = String::new();
        let mut progress_read = Instant::now();
        let mut follower: Option<ProgressFollower> = None;
        let outcome = loop {
            if let Ok(mut file) = fs::File::open(&checked.log) {
                let _ = file.seek(SeekFrom::Start(offset));
                let mut reader = BufReader::new(file);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    offset += line.len() as u64;
                    if !line.ends_with('\n') {
                        partial.push_str(&line);
                        line.clear();
                        break;
                    }
                    let full = std::mem::take(&mut partial) + line.trim_end();
                    tracker.feed(&full);
                    self.driver.progress(StepKind::FollowLog, &full);
                    if let (Some(done), Some(ratio)) = (
                        tracker.last_restored(),
                        replay_ratio(
                            &checked.line,
                            tracker.last_restored(),
                            checked.archive_last.as_deref(),
                        ),
                    ) {
                        self.driver
                            .gauge(StepKind::FollowLog, ratio, &format!("replayed {done}"));
                    }
                    line.clear();
                }
            }
            if tracker.finished() {
                break tracker.outcome(
                    checked.archive_last.as_deref().unwrap_or(""),
                    target.as_ref(),
                );
            }
            if self.driver.interrupted() {
                return Err(self.stop_for_interrupt(checked, StepKind::FollowLog));
            }
            if progress_read.elapsed() >= PROGRESS_EVERY {
                progress_read = Instant::now();
                if follower.is_none()
                    && let Some(plan) = &self.plan_path
                {
                    follower = ProgressFollower::open(plan).ok();
                }
                // The helper's request log: segments handed over against the
                // line's end, the rate, the time left.
                if let Some(follower) = &mut follower {
                    let progress = follower.poll(SystemTime::now());
                    self.driver.replay_progress(&progress);
                }
            }
            if Instant::now() > deadline {
                return Err(fail(
                    StepKind::FollowLog,
                    StepFailure::ReplayTimeout {
                        timeout: self.request.replay_timeout,
                        log: checked.log.clone(),
                    },
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let text = outcome.to_string();
        if outcome.verdict == Verdict::Succeeded {
            self.clock.end(Phase::StartToWritable);
        }
        self.summary.replay = Some(outcome.clone());
        if !outcome.is_success() {
            return Err(fail(
                StepKind::FollowLog,
                StepFailure::Replay(Box::new(outcome)),
            ));
        }
        self.done(StepKind::FollowLog, &text)
    }

    pub(super) fn report(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        if self.request.dry_run {
            return self.done(StepKind::Report, "would query the server");
        }
        let socket_dir = setting(&self.request.settings, "unix_socket_directories")
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|| "/var/run/postgresql".into());
        let port = setting(&self.request.settings, "port").unwrap_or_else(|| "5432".into());
        let mut command = checked.user.command(checked.pg_bin.join("psql"));
        command
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                &socket_dir,
                "-p",
                &port,
                "-d",
                "postgres",
                "-c",
            ])
            .arg(
                "select pg_is_in_recovery(), coalesce(to_char(pg_last_xact_replay_timestamp() \
                 at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')",
            );
        let mut answer = String::new();
        for _ in 0..50 {
            if let Ok(text) = self.exec(StepKind::Report, command_clone(&command)) {
                answer = text;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The answer's line, whatever else psql said (a warning on stderr).
        let row = answer
            .lines()
            .find(|line| line.starts_with("t|") || line.starts_with("f|"))
            .unwrap_or("");
        let mut fields = row.trim().split('|');
        self.summary.in_recovery = fields.next().map(|f| f == "t");
        self.summary.last_replayed_transaction =
            fields.next().filter(|f| !f.is_empty()).map(str::to_owned);
        if row.is_empty() {
            return Err(fail(
                StepKind::Report,
                StepFailure::NoAnswer {
                    socket_dir,
                    port,
                    log: checked.log.clone(),
                },
            ));
        }
        self.summary.reached_segment = self
            .summary
            .replay
            .as_ref()
            .and_then(|r| r.last_segment.clone());
        self.summary.archive_last_commit = checked
            .recovery_point
            .as_ref()
            .map(|p| crate::display::rfc3339_micros(p.transaction.time));
        let to_the_end = checked.target.is_none();
        if to_the_end && self.summary.in_recovery == Some(true) {
            return Err(fail(
                StepKind::Report,
                StepFailure::NotPromoted {
                    log: checked.log.clone(),
                },
            ));
        }
        // Replay to the end must bring back the line's last commit: anything
        // else is another history (an older timeline's file read in place of
        // the line's own) or a stop before the end.
        let forced_short = self.request.forced.iter().any(|f| f == "wal-line");
        if to_the_end
            && !forced_short
            && let Some(expected) = &self.summary.archive_last_commit
            && self.summary.last_replayed_transaction.as_ref() != Some(expected)
        {
            return Err(fail(
                StepKind::Report,
                StepFailure::WrongEnd {
                    expected: expected.clone(),
                    found: self
                        .summary
                        .last_replayed_transaction
                        .clone()
                        .unwrap_or_else(|| "none".into()),
                },
            ));
        }
        let recovery = if self.summary.in_recovery == Some(true) {
            "paused at the target, read-only: check the data, then `select pg_wal_replay_resume()` to promote"
        } else {
            "promoted, accepting writes"
        };
        let last = self
            .summary
            .last_replayed_transaction
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let matches = if to_the_end && self.summary.archive_last_commit.is_some() {
            " (the archive's last commit on the line)"
        } else {
            ""
        };
        self.done(
            StepKind::Report,
            &format!(
                "server answers: {recovery}; last replayed transaction at {last}{matches}. \
                 Archiving is off: once this server is the one to back up, run \
                 `ALTER SYSTEM RESET archive_mode;` in psql and restart it (it then archives into \
                 {} on a new timeline), or set up its backups with `walwarden setup`.",
                self.client.wal_dir().display()
            ),
        )
    }
}

/// How far replay is from the base backup's start to the archive's last segment.
fn replay_ratio(line: &Continuity, restored: Option<&str>, last: Option<&str>) -> Option<f64> {
    let seg_size = line.segment_size;
    let number = |name: &str| {
        crate::archive::wal::RawSegmentName::parse(name.get(..24)?)?
            .resolve(seg_size)
            .ok()
            .map(|id| id.segment.0)
    };
    let start = number(line.needed_from.as_deref()?)?;
    let (done, end) = (number(restored?)?, number(last?)?);
    Some(
        ((done.saturating_sub(start)) as f64 / (end.saturating_sub(start)).max(1) as f64)
            .clamp(0.0, 1.0),
    )
}

fn setting(settings: &[(String, String)], key: &str) -> Option<String> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn command_clone(command: &Command) -> Command {
    let mut clone = Command::new(command.get_program());
    clone.args(command.get_args());
    clone
}
