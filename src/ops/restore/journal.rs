//! The restore journal: one JSON line per event, in a file next to the data
//! directory (never inside it: the data directory is what gets cleared).
//! It records what was asked (the first line of an attempt: every setting
//! the run needs, so `--resume` goes on with the same ones), what was done,
//! when, and how to undo it, so an interrupted restore can be resumed or
//! rolled back, and a finished one leaves a record. Every path it writes,
//! moves or deletes is checked by the archive's guard first.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::error::RollbackError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Started,
    Done,
    Skipped,
    Failed,
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339 UTC.
    pub at: String,
    pub step: String,
    pub outcome: Outcome,
    pub detail: String,
    /// Where the old data directory's contents were moved, for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_aside_to: Option<PathBuf>,
    /// What was asked, on the attempt's first line: `--resume` goes on with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<JournaledRequest>,
}

/// Everything of a restore request the steps after an interruption need,
/// as the journal keeps it: `--resume` takes these, not the defaults (a
/// forgotten `--set port=` would ask another server whether replay ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledRequest {
    pub target_time: Option<String>,
    pub timeline: Option<u32>,
    pub pg_bin: Option<PathBuf>,
    pub os_user: String,
    /// The `--set` settings: port, socket folder and the rest.
    pub settings: Vec<(String, String)>,
    /// The preflight checks gone past.
    pub forced: Vec<String>,
    pub replay_timeout_secs: u64,
    pub start_command: Option<String>,
    pub stop_command: Option<String>,
    pub server_log: Option<PathBuf>,
}

impl JournaledRequest {
    pub fn of(request: &super::request::RestoreRequest) -> JournaledRequest {
        JournaledRequest {
            target_time: request.target_time.clone(),
            timeline: request.timeline,
            pg_bin: request.pg_bin.clone(),
            os_user: request.os_user.clone(),
            settings: request.settings.clone(),
            forced: request.forced.clone(),
            replay_timeout_secs: request.replay_timeout.as_secs(),
            start_command: request.local.start.clone(),
            stop_command: request.local.stop.clone(),
            server_log: request.local.log.clone(),
        }
    }

    /// Fills `request` from what was journaled: whatever the resuming
    /// command line leaves at its default comes from the interrupted
    /// attempt; what it gives wins (a fixed `--start-command`, one more
    /// `--set`, which replaces the journaled one of its key).
    pub fn fill(&self, request: &mut super::request::RestoreRequest) {
        use super::request::{DEFAULT_OS_USER, DEFAULT_REPLAY_TIMEOUT};
        let mut settings = self.settings.clone();
        for (key, value) in request.settings.drain(..) {
            match settings.iter_mut().find(|(k, _)| *k == key) {
                Some(known) => known.1 = value,
                None => settings.push((key, value)),
            }
        }
        request.settings = settings;
        request.target_time = request.target_time.take().or(self.target_time.clone());
        request.timeline = request.timeline.or(self.timeline);
        request.pg_bin = request.pg_bin.take().or(self.pg_bin.clone());
        if request.os_user == DEFAULT_OS_USER {
            request.os_user = self.os_user.clone();
        }
        for forced in &self.forced {
            if !request.forced.contains(forced) {
                request.forced.push(forced.clone());
            }
        }
        if request.replay_timeout == DEFAULT_REPLAY_TIMEOUT {
            request.replay_timeout = std::time::Duration::from_secs(self.replay_timeout_secs);
        }
        request.local.start = request.local.start.take().or(self.start_command.clone());
        request.local.stop = request.local.stop.take().or(self.stop_command.clone());
        request.local.log = request.local.log.take().or(self.server_log.clone());
    }
}

pub struct Journal {
    path: PathBuf,
    file: Option<File>,
}

impl Journal {
    /// `<parent>/<data dir name>.walwarden-restore.jsonl`: beside the data directory.
    pub fn path_for(data_dir: &Path) -> PathBuf {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        data_dir.with_file_name(format!("{name}.walwarden-restore.jsonl"))
    }

    /// Opens (appending) the journal; a dry run keeps it in memory only.
    /// Refused (as a permission) when it would lie inside the backup root.
    pub fn open(data_dir: &Path, dry_run: bool) -> io::Result<Journal> {
        let path = Journal::path_for(data_dir);
        crate::store::guard::check_write(&path, "the restore journal")?;
        let file = if dry_run {
            None
        } else {
            Some(OpenOptions::new().create(true).append(true).open(&path)?)
        };
        Ok(Journal { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(
        &mut self,
        step: &str,
        outcome: Outcome,
        detail: impl Into<String>,
        moved_aside_to: Option<PathBuf>,
    ) -> io::Result<()> {
        self.write(Entry {
            at: crate::display::time_text_precise(SystemTime::now()),
            step: step.to_owned(),
            outcome,
            detail: detail.into(),
            moved_aside_to,
            request: None,
        })
    }

    /// The attempt's first line: what was asked, for `--resume`.
    pub fn record_request(&mut self, request: &JournaledRequest) -> io::Result<()> {
        self.write(Entry {
            at: crate::display::time_text_precise(SystemTime::now()),
            step: "request".to_owned(),
            outcome: Outcome::Started,
            detail: "the restore as asked (--resume goes on with these settings)".to_owned(),
            moved_aside_to: None,
            request: Some(request.clone()),
        })
    }

    fn write(&mut self, entry: Entry) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            let line = serde_json::to_string(&entry).map_err(io::Error::other)?;
            writeln!(file, "{line}")?;
            // The journal must survive a power cut in the middle of the next step.
            file.sync_data()?;
        }
        Ok(())
    }

    /// Every entry of a journal file, oldest first; unreadable lines are skipped.
    pub fn read(path: &Path) -> io::Result<Vec<Entry>> {
        let reader = BufReader::new(File::open(path)?);
        Ok(reader
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// Where the last restore moved the old contents, if it did and did not finish.
    pub fn pending_rollback(entries: &[Entry]) -> Option<PathBuf> {
        let finished = entries
            .iter()
            .rposition(|e| e.step == "report" && e.outcome == Outcome::Done);
        let moved = entries.iter().rposition(|e| e.moved_aside_to.is_some())?;
        if finished.is_some_and(|f| f > moved) {
            return None;
        }
        entries[moved].moved_aside_to.clone()
    }
}

/// `<dir>.<what>-<UTC time>` beside the data directory: where old contents are
/// moved aside, or a failed restore's files are kept.
pub fn stamped_sibling(data_dir: &Path, what: &str) -> PathBuf {
    let stamp = crate::display::time_text(SystemTime::now()).replace([':', '-'], "");
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!("{name}.{what}-{stamp}"))
}

/// Puts the old contents back after an interrupted or failed restore: what
/// the restore left in the data directory is moved to `<dir>.failed-<time>`
/// (kept for inspection, never deleted), then the moved-aside entries return.
/// Returns where the failed restore's files went.
pub fn roll_back(data_dir: &Path) -> Result<PathBuf, RollbackError> {
    let journal_path = Journal::path_for(data_dir);
    let entries =
        Journal::read(&journal_path).map_err(|source| RollbackError::JournalUnreadable {
            path: journal_path.clone(),
            source,
        })?;
    let aside = Journal::pending_rollback(&entries)
        .ok_or_else(|| RollbackError::NothingToRollBack(journal_path.clone()))?;
    let failed = stamped_sibling(data_dir, "failed");
    // Everything moved or made here, checked before the first move.
    for (path, what) in [
        (data_dir, "the data directory"),
        (aside.as_path(), "the moved-aside folder"),
        (
            failed.as_path(),
            "the folder for the failed restore's files",
        ),
        (journal_path.as_path(), "the restore journal"),
    ] {
        crate::store::guard::check_write(path, what).map_err(RollbackError::Archive)?;
    }
    if !aside.is_dir() {
        return Err(RollbackError::AsideGone(aside));
    }
    if data_dir.join("postmaster.pid").exists() {
        return Err(RollbackError::ServerRunning(data_dir.to_owned()));
    }
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| RollbackError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir(&failed).map_err(io("create", &failed))?;
    let move_all = |from: &Path, to: &Path| -> Result<(), RollbackError> {
        for entry in std::fs::read_dir(from).map_err(io("read", from))?.flatten() {
            let target = to.join(entry.file_name());
            std::fs::rename(entry.path(), &target).map_err(|source| RollbackError::Move {
                from: entry.path(),
                to: target.clone(),
                source,
            })?;
        }
        Ok(())
    };
    if data_dir.is_dir() {
        move_all(data_dir, &failed)?;
    } else {
        std::fs::create_dir_all(data_dir).map_err(io("create", data_dir))?;
    }
    move_all(&aside, data_dir)?;
    let _ = std::fs::remove_dir(&aside);
    // The failed restore's restore_command helper: its plan, spool and
    // request log beside the data directory go with it (the server is gone).
    let helper_plan = crate::ops::walget::plan::plan_path(data_dir);
    if helper_plan.exists() {
        let _ = crate::ops::walget::finish::finish(&helper_plan);
    }
    let mut journal = Journal::open(data_dir, false).map_err(RollbackError::Journal)?;
    journal
        .record(
            "rollback",
            Outcome::Done,
            format!(
                "old contents back from {}; the failed restore's files are in {}",
                aside.display(),
                failed.display()
            ),
            None,
        )
        .map_err(RollbackError::Journal)?;
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_request_takes_the_journaled_settings_unless_given_again() {
        use crate::ops::restore::request::RestoreRequest;
        let config = crate::config::Config::default();
        let mut asked = RestoreRequest::new(&config, "acme", "/d".into());
        asked.settings = vec![
            ("port".into(), "5439".into()),
            ("unix_socket_directories".into(), "/tmp/s".into()),
        ];
        asked.target_time = Some("2026-11-25 13:00:00+00".into());
        asked.timeline = Some(2);
        asked.pg_bin = Some("/opt/pg15/bin".into());
        asked.os_user = "pg".into();
        asked.forced = vec!["wal-line".into()];
        asked.local.start = Some("start it".into());
        let journaled = JournaledRequest::of(&asked);
        let line = serde_json::to_string(&Entry {
            at: String::new(),
            step: "request".into(),
            outcome: Outcome::Started,
            detail: String::new(),
            moved_aside_to: None,
            request: Some(journaled.clone()),
        })
        .unwrap();
        let read: Entry = serde_json::from_str(&line).unwrap();
        let mut resumed = RestoreRequest::new(&config, "acme", "/d".into());
        read.request.unwrap().fill(&mut resumed);
        assert_eq!(
            resumed, asked,
            "--resume alone continues with everything asked"
        );
        let mut fixed = RestoreRequest::new(&config, "acme", "/d".into());
        fixed.settings = vec![("port".into(), "5440".into())];
        fixed.local.start = Some("start it properly".into());
        journaled.fill(&mut fixed);
        assert_eq!(
            fixed.settings,
            vec![
                ("port".to_owned(), "5440".to_owned()),
                ("unix_socket_directories".to_owned(), "/tmp/s".to_owned())
            ]
        );
        assert_eq!(fixed.local.start.as_deref(), Some("start it properly"));
        assert_eq!(fixed.os_user, "pg");
    }

    #[test]
    fn records_lines_and_finds_what_to_roll_back() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("main");
        let mut journal = Journal::open(&data, false).unwrap();
        assert_eq!(
            journal.path(),
            tmp.path().join("main.walwarden-restore.jsonl")
        );
        journal
            .record("preflight", Outcome::Done, "ok", None)
            .unwrap();
        journal
            .record(
                "clear",
                Outcome::Done,
                "moved",
                Some(tmp.path().join("aside")),
            )
            .unwrap();
        let entries = Journal::read(journal.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            Journal::pending_rollback(&entries),
            Some(tmp.path().join("aside"))
        );
        journal
            .record("report", Outcome::Done, "restored", None)
            .unwrap();
        assert_eq!(
            Journal::pending_rollback(&Journal::read(journal.path()).unwrap()),
            None
        );
    }

    #[test]
    fn a_rollback_puts_the_old_contents_back_and_keeps_the_failed_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("main");
        let aside = tmp.path().join("main.aside-x");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::write(aside.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(data.join("half-unpacked"), "x").unwrap();
        let mut journal = Journal::open(&data, false).unwrap();
        journal
            .record("clear", Outcome::Done, "moved", Some(aside.clone()))
            .unwrap();
        journal
            .record("unpack", Outcome::Failed, "truncated", None)
            .unwrap();
        let failed = roll_back(&data).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("PG_VERSION")).unwrap(),
            "15\n"
        );
        assert!(!data.join("half-unpacked").exists());
        assert!(
            failed.join("half-unpacked").exists(),
            "the failed restore's files are kept"
        );
        assert!(!aside.exists());
        assert!(
            roll_back(&data).is_err(),
            "a second rollback has nothing to do"
        );
    }

    #[test]
    fn a_dry_run_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&tmp.path().join("main"), true).unwrap();
        journal
            .record("preflight", Outcome::DryRun, "would check", None)
            .unwrap();
        assert!(!journal.path().exists());
    }
}
