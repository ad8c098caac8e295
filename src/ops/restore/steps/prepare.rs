//! Steps 3 to 6, preparing the data directory: stop the local instance,
//! clear the directory (moved aside, or purged after a typed confirmation),
//! unpack the tarballs into it, write the recovery configuration.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Checked, Runner, StepKind, fail};
use crate::display::short_duration;
use crate::ops::restore::error::{PreflightRefusal, RestoreError, StepFailure};
use crate::ops::restore::files::{keep_owner_and_mode, prepare_dir, remove, write_owned};
use crate::ops::restore::journal::{self, Outcome};
use crate::ops::restore::recovery_conf::{self, RecoverySettings, TargetAction};
use crate::ops::restore::service::{
    ServiceControl, postmaster_alive, shell, wait_for_pid_file_gone,
};
use crate::ops::restore::unpack::{self, UnpackOptions};
use crate::pg::local;

impl Runner<'_> {
    pub(super) fn stop_local(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = &self.request.data_dir;
        let pid_file = data.join("postmaster.pid");
        if !postmaster_alive(data) {
            return self.record(
                StepKind::StopLocal,
                Outcome::Skipped,
                "no postmaster is running on the data directory",
                None,
            );
        }
        let how = match &checked.service {
            ServiceControl::PgCtl => "pg_ctl stop -m fast".to_owned(),
            ServiceControl::Commands { stop, .. } => stop.clone(),
        };
        if !self.confirm(&format!(
            "A PostgreSQL server is running on {}. Stop it ({how})?",
            data.display()
        )) {
            return Err(RestoreError::Cancelled(StepKind::StopLocal.id()));
        }
        let command = match &checked.service {
            ServiceControl::PgCtl => {
                let mut command = checked.user.command(checked.pg_bin.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(data)
                    .args(["stop", "-m", "fast", "-w", "-t", "120"]);
                command
            }
            ServiceControl::Commands { stop, .. } => shell(stop),
        };
        self.exec(StepKind::StopLocal, command)?;
        if !self.request.dry_run {
            wait_for_pid_file_gone(&pid_file, Duration::from_secs(120));
        }
        if !self.request.dry_run && pid_file.exists() {
            return Err(fail(StepKind::StopLocal, StepFailure::StillRunning));
        }
        self.done(StepKind::StopLocal, "stopped")
    }

    pub(super) fn clear(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let entries: Vec<PathBuf> = fs::read_dir(&data)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            if !self.request.dry_run {
                fs::create_dir_all(&data)
                    .map_err(|e| fail(StepKind::Clear, StepFailure::io("create", &data)(e)))?;
                prepare_dir(&data, &checked.user).map_err(|e| fail(StepKind::Clear, e))?;
            }
            self.driver.command(&format!(
                "mkdir -p {} && chown {} && chmod 700",
                local::shell_quote(&data.to_string_lossy()),
                checked.user.name
            ));
            return self.done(
                StepKind::Clear,
                &format!("{} is empty and ready", data.display()),
            );
        }
        if self.request.purge {
            let expected = &self.client.name;
            if !self.confirm_typed(&format!("Delete everything in {} for good? Type the client name ({expected}) to confirm", data.display()), expected) {
                return Err(RestoreError::Cancelled(StepKind::Clear.id()));
            }
            for entry in &entries {
                self.driver.command(&format!(
                    "rm -rf {}",
                    local::shell_quote(&entry.to_string_lossy())
                ));
                if !self.request.dry_run {
                    remove(entry)
                        .map_err(|e| fail(StepKind::Clear, StepFailure::io("delete", entry)(e)))?;
                }
            }
            return self.done(
                StepKind::Clear,
                &format!("deleted {} entries", entries.len()),
            );
        }
        let aside = journal::stamped_sibling(&data, "aside");
        crate::store::guard::check_write(&aside, "the aside folder")
            .map_err(|e| RestoreError::Preflight(PreflightRefusal::Archive(e)))?;
        if !self.confirm(&format!(
            "Move the {} entries of {} aside to {}?",
            entries.len(),
            data.display(),
            aside.display()
        )) {
            return Err(RestoreError::Cancelled(StepKind::Clear.id()));
        }
        self.driver.command(&format!(
            "mkdir {0} && mv {1}/* {0}/",
            local::shell_quote(&aside.to_string_lossy()),
            local::shell_quote(&data.to_string_lossy())
        ));
        if self.request.dry_run {
            return self.done(
                StepKind::Clear,
                &format!("would move the old contents to {}", aside.display()),
            );
        }
        fs::create_dir(&aside)
            .map_err(|e| fail(StepKind::Clear, StepFailure::io("create", &aside)(e)))?;
        // The old contents keep who may read them: the original's owner and mode (700 postgres).
        keep_owner_and_mode(&data, &aside).map_err(|e| fail(StepKind::Clear, e))?;
        // Journal before moving: a crash in the middle still knows where things went.
        self.record(
            StepKind::Clear,
            Outcome::Started,
            "moving the old contents aside",
            Some(aside.clone()),
        )?;
        for entry in &entries {
            let target = aside.join(entry.file_name().unwrap_or_default());
            fs::rename(entry, &target).map_err(|e| {
                fail(
                    StepKind::Clear,
                    StepFailure::Move {
                        from: entry.to_owned(),
                        to: target.to_owned(),
                        source: e,
                    },
                )
            })?;
        }
        self.summary.moved_aside_to = Some(aside.clone());
        self.record(
            StepKind::Clear,
            Outcome::Done,
            &format!("moved the old contents to {}", aside.display()),
            Some(aside),
        )
    }

    /// Resuming after an interrupted unpack: the data directory holds only
    /// that restore's files (the old contents were moved aside before). They
    /// are kept in `<dir>.failed-<time>`, never deleted, and the unpack starts over.
    pub(super) fn clear_interrupted_unpack(
        &mut self,
        checked: &Checked,
    ) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let has_files = fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some());
        if !has_files {
            return self.done(
                StepKind::Clear,
                "empty: the interrupted restore left nothing",
            );
        }
        let kept = journal::stamped_sibling(&data, "failed");
        crate::store::guard::check_write(&kept, "the folder for the interrupted unpack's files")
            .map_err(|e| RestoreError::Preflight(PreflightRefusal::Archive(e)))?;
        self.driver.command(&format!(
            "mv {} {} && mkdir {}",
            local::shell_quote(&data.to_string_lossy()),
            local::shell_quote(&kept.to_string_lossy()),
            local::shell_quote(&data.to_string_lossy())
        ));
        if !self.request.dry_run {
            fs::rename(&data, &kept).map_err(|e| {
                fail(
                    StepKind::Clear,
                    StepFailure::Move {
                        from: data.to_owned(),
                        to: kept.to_owned(),
                        source: e,
                    },
                )
            })?;
            fs::create_dir(&data)
                .map_err(|e| fail(StepKind::Clear, StepFailure::io("create", &data)(e)))?;
            prepare_dir(&data, &checked.user).map_err(|e| fail(StepKind::Clear, e))?;
        }
        self.done(
            StepKind::Clear,
            &format!(
                "the interrupted unpack's files kept in {}; unpacking again",
                kept.display()
            ),
        )
    }

    pub(super) fn unpack(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let data = self.request.data_dir.clone();
        let pg_wal = data.join("pg_wal");
        for (tarball, dest) in [(&checked.base_tar, &data), (&checked.pg_wal_tar, &pg_wal)] {
            // pg_wal.tar.gz holds its files at the tar root: they belong in DATA/pg_wal.
            self.driver.command(&format!(
                "tar xzf {} -C {}",
                local::shell_quote(&tarball.to_string_lossy()),
                local::shell_quote(&dest.to_string_lossy())
            ));
            if self.request.dry_run {
                continue;
            }
            fs::create_dir_all(dest)
                .map_err(|e| fail(StepKind::Unpack, StepFailure::io("create", dest)(e)))?;
            prepare_dir(dest, &checked.user).map_err(|e| fail(StepKind::Unpack, e))?;
            let options = UnpackOptions {
                owner: Some((checked.user.uid, checked.user.gid)),
            };
            self.driver.progress(
                StepKind::Unpack,
                &format!("unpacking {}", tarball.display()),
            );
            let driver = &mut *self.driver;
            let mut last_shown = Instant::now() - Duration::from_secs(10);
            let summary = unpack::unpack(tarball, dest, &options, &mut |p| {
                if last_shown.elapsed() >= Duration::from_millis(500) {
                    last_shown = Instant::now();
                    let ratio = p.compressed_done as f64 / p.compressed_total.max(1) as f64;
                    let name = tarball
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    driver.gauge(StepKind::Unpack, ratio, &format!("unpacking {name}"));
                    let eta = p
                        .eta()
                        .map_or(String::new(), |e| format!(", {} left", short_duration(e)));
                    driver.progress(
                        StepKind::Unpack,
                        &format!(
                            "{}: {} of {} read, {} files, {:.0} MB/s{eta}",
                            tarball.file_name().unwrap_or_default().to_string_lossy(),
                            crate::display::human_bytes(p.compressed_done),
                            crate::display::human_bytes(p.compressed_total),
                            p.files,
                            p.rate() / 1e6
                        ),
                    );
                }
            })
            .map_err(|e| fail(StepKind::Unpack, StepFailure::Unpack(e)))?;
            // Unpacking does not sync file by file: once, here, before anything relies on it.
            unpack::sync_tree(dest).map_err(|e| fail(StepKind::Unpack, StepFailure::Sync(e)))?;
            self.driver.progress(
                StepKind::Unpack,
                &format!(
                    "{}: {} files, {} in {}",
                    tarball.display(),
                    summary.files,
                    crate::display::human_bytes(summary.bytes),
                    short_duration(summary.elapsed)
                ),
            );
        }
        if !self.request.dry_run {
            // postgres also needs these to exist, and the log folder for our start command.
            for dir in [data.join("pg_wal/archive_status"), data.join("log")] {
                fs::create_dir_all(&dir)
                    .map_err(|e| fail(StepKind::Unpack, StepFailure::io("create", &dir)(e)))?;
                prepare_dir(&dir, &checked.user).map_err(|e| fail(StepKind::Unpack, e))?;
            }
            // A stale postmaster.pid from the backup would stop the start.
            let _ = fs::remove_file(data.join("postmaster.pid"));
        }
        let detail = if self.request.dry_run {
            "would unpack the base backup and its WAL"
        } else {
            "base backup and its WAL unpacked"
        };
        self.done(StepKind::Unpack, detail)
    }

    pub(super) fn recovery_config(&mut self, checked: &Checked) -> Result<(), RestoreError> {
        let plan_path = crate::ops::walget::plan::plan_path(&self.request.data_dir);
        let helper =
            crate::ops::walget::plan::restore_command(&self.request.helper_exe, &plan_path)
                .map_err(|e| fail(StepKind::RecoveryConfig, e.into()))?;
        let settings = RecoverySettings {
            major: checked.major,
            // Absolute whatever the root was given as: the server runs elsewhere.
            archive_dir: std::path::absolute(self.client.wal_dir())
                .unwrap_or_else(|_| self.client.wal_dir()),
            layout: checked.layout,
            restore_command: Some(helper),
            target_timeline: checked
                .line
                .recovery_target_timeline()
                .unwrap_or_else(|| "current".to_owned()),
            target_time: checked.target,
            target_action: TargetAction::Pause,
            extra: self.request.settings.clone(),
        };
        let files = recovery_conf::recovery_files(&settings)
            .map_err(|e| fail(StepKind::RecoveryConfig, e.into()))?;
        self.write_helper_plan(checked)
            .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
        let data = &self.request.data_dir;
        // A Debian-layout cluster keeps these in /etc/postgresql: its base
        // backup has none, and PostgreSQL will not start without them.
        let mut supplied = Vec::new();
        for (name, content) in recovery_conf::DEBIAN_LAYOUT_FILES {
            let path = data.join(name);
            if self.request.dry_run || path.exists() {
                continue;
            }
            self.driver.command(&format!(
                "write {} (the base backup has none: a Debian-layout cluster keeps it in /etc/postgresql)",
                path.display()
            ));
            write_owned(&path, content.as_bytes(), &checked.user, false)
                .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            supplied.push(*name);
        }
        for (relative, content) in &files.files {
            let path = data.join(relative);
            self.driver.command(&format!(
                "write {} ({} bytes, mode 0600)",
                path.display(),
                content.len()
            ));
            if !self.request.dry_run {
                write_owned(&path, content.as_bytes(), &checked.user, false)
                    .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            }
        }
        if !files.auto_conf_append.is_empty() {
            let path = data.join("postgresql.auto.conf");
            self.driver.command(&format!(
                "append to {}:\n{}",
                path.display(),
                files.auto_conf_append.trim_end()
            ));
            if !self.request.dry_run {
                write_owned(
                    &path,
                    files.auto_conf_append.as_bytes(),
                    &checked.user,
                    true,
                )
                .map_err(|e| fail(StepKind::RecoveryConfig, e))?;
            }
        }
        // What the base backup brings that would keep the server from being
        // promoted: standby.signal (it wins over recovery.signal and waits for
        // a primary for ever) and, from 12 on, a recovery.conf (a FATAL).
        let mut removed = Vec::new();
        let mut leftovers = vec!["standby.signal"];
        if checked.major >= 12 {
            leftovers.push("recovery.conf");
        }
        for name in leftovers {
            let path = data.join(name);
            if !path.exists() {
                continue;
            }
            self.driver.command(&format!(
                "rm {} (it came with the base backup)",
                path.display()
            ));
            if !self.request.dry_run {
                fs::remove_file(&path).map_err(|source| {
                    fail(
                        StepKind::RecoveryConfig,
                        StepFailure::Io {
                            action: "delete",
                            path: path.clone(),
                            source,
                        },
                    )
                })?;
            }
            removed.push(name);
        }
        let removed = if removed.is_empty() {
            String::new()
        } else {
            format!(
                "; {} from the base backup removed (the server would stay a standby or refuse to start)",
                removed.join(" and ")
            )
        };
        let kind = if checked.major >= 12 {
            "recovery.signal + postgresql.auto.conf"
        } else {
            "recovery.conf"
        };
        let verb = if self.request.dry_run {
            "would be written"
        } else {
            "written"
        };
        let supplied = if supplied.is_empty() {
            String::new()
        } else {
            format!(
                "; {} written (the backup had none; pg_hba.conf allows local peer connections only)",
                supplied.join(", ")
            )
        };
        self.done(
            StepKind::RecoveryConfig,
            &format!(
                "{kind} {verb} (restore_command: walwarden wal-get, which verifies and prefetches the line; recovery_target_timeline = '{}'); inherited recovery targets and standby settings reset{removed}; archiving is off in the restored instance{supplied}",
                settings.target_timeline
            ),
        )
    }
}
