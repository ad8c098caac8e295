//! Step 1, the preflight: everything checked before anything is touched
//! (a complete base backup, the binaries' major version, the data
//! directory, free space, the tarballs' entries, the WAL to consistency, the
//! archive readable as the PostgreSQL user).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Checked, Runner, StepKind};
use crate::archive::folder::BaseFileKind;
use crate::ops::restore::error::{PreflightRefusal, RestoreError};
use crate::ops::restore::files::existing_ancestor;
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::recovery_conf::ArchiveLayout;
use crate::ops::restore::service::resolve_service;
use crate::ops::restore::unpack;
use crate::pg::local::{self, PgUser};

impl Runner<'_> {
    pub(super) fn preflight(&mut self) -> Result<Checked, RestoreError> {
        let client = self.client;
        let request = self.request;
        let refuse = |why: PreflightRefusal| Err(RestoreError::Preflight(why));
        let base_dir = client.base_dir();
        let (Some(base_tar), Some(pg_wal_tar)) = (
            client.base.file(BaseFileKind::BaseTar),
            client.base.file(BaseFileKind::PgWalTar),
        ) else {
            return refuse(PreflightRefusal::NoCompleteBackup {
                client: client.name.clone(),
            });
        };
        if let Some(ts) = client
            .base
            .files
            .iter()
            .find(|f| f.kind == BaseFileKind::Tablespace)
        {
            return refuse(PreflightRefusal::Tablespace {
                tarball: ts.fact.name.clone(),
            });
        }
        let Some(backup_version) = client
            .base
            .pg_version()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        else {
            return refuse(PreflightRefusal::NoPgVersion);
        };
        let pg_bin = request
            .pg_bin
            .clone()
            .unwrap_or_else(|| local::default_pg_bin(backup_version));
        let major = local::server_major(&pg_bin)?;
        if major != backup_version {
            return refuse(PreflightRefusal::MajorMismatch {
                backup: backup_version,
                pg_bin,
                found: major,
            });
        }
        let user = PgUser::lookup(&request.os_user)?;
        if !user.can_act_as() {
            return refuse(PreflightRefusal::NotThatUser { user: user.name });
        }
        self.check_data_dir(&client.path)?;
        let plan = unpack::scan_tarball_remembered(&base_dir.join(&base_tar.fact.name))
            .map_err(PreflightRefusal::Tarball)?;
        let wal_plan = unpack::scan_tarball_remembered(&base_dir.join(&pg_wal_tar.fact.name))
            .map_err(PreflightRefusal::Tarball)?;
        if let Some(bad) = plan.refused.first().or(wal_plan.refused.first()) {
            return refuse(PreflightRefusal::EscapingEntry {
                entry: bad.entry.clone(),
                reason: bad.reason.to_string(),
            });
        }
        let needed = plan.disk_bytes + wal_plan.disk_bytes;
        let parent = existing_ancestor(&request.data_dir);
        let free = nix::sys::statvfs::statvfs(&parent)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(u64::MAX);
        if free < needed + needed / 10 {
            return refuse(PreflightRefusal::NoSpace {
                folder: parent,
                free,
                needed,
            });
        }
        if let Some(gap) = client.continuity.gaps.iter().find(|g| g.before_consistency) {
            return refuse(PreflightRefusal::NotConsistent {
                first: gap.first.clone(),
                last: gap.last.clone(),
            });
        }
        let wal_dir = client.wal_dir();
        if let Err(refused) = self.check_archive_readable(&user, &wal_dir) {
            if !request.forced.iter().any(|f| f == "archive-readable") {
                return Err(refused);
            }
            self.driver.progress(
                StepKind::Preflight,
                &format!("FORCED past (--force archive-readable): {refused}"),
            );
            // Its own journal line: the record shows the engineer went past it.
            self.journal
                .record("forced", Outcome::Skipped, refused.to_string(), None)
                .map_err(|source| RestoreError::Journal {
                    path: self.journal.path().to_owned(),
                    source,
                })?;
        }
        let compressed = client.wal.segments.iter().any(|s| s.compressed);
        let plain = client.wal.segments.iter().any(|s| !s.compressed);
        let layout = match (compressed, plain) {
            (true, true) => ArchiveLayout::Both,
            (false, true) => ArchiveLayout::Plain,
            _ => ArchiveLayout::Compressed,
        };
        let window = match (
            client.continuity.restorable_from,
            client.continuity.restorable_to,
        ) {
            (Some(from), Some(to)) => format!(
                "restorable from {} to {}",
                crate::display::time_text(from),
                crate::display::time_text(to)
            ),
            _ => "restorable window unknown".into(),
        };
        let gaps = match client.continuity.gaps.len() {
            0 => String::new(),
            n => format!("; {n} gap(s) after consistency: replay stops at the first"),
        };
        self.done(
            StepKind::Preflight,
            &format!(
                "PostgreSQL {major} backup, {} to unpack, {window}{gaps}",
                crate::display::human_bytes(needed)
            ),
        )?;
        let default_log = request.data_dir.join("log").join("walwarden-restore.log");
        let (service, log) = resolve_service(request, major, &pg_bin, default_log);
        Ok(Checked {
            user,
            pg_bin,
            major,
            base_tar: base_dir.join(&base_tar.fact.name),
            pg_wal_tar: base_dir.join(&pg_wal_tar.fact.name),
            layout,
            archive_last: client.continuity.restorable_through.clone(),
            log,
            service,
        })
    }

    /// Refuses a data directory that is neither empty nor a PostgreSQL one,
    /// a mount point, or a place inside the backup root.
    fn check_data_dir(&mut self, client_dir: &Path) -> Result<(), RestoreError> {
        let data = &self.request.data_dir;
        let refuse = |why: PreflightRefusal| Err(RestoreError::Preflight(why));
        if !data.is_absolute() {
            return refuse(PreflightRefusal::DataDirRelative(data.clone()));
        }
        let root = client_dir.parent().unwrap_or(client_dir);
        let canonical_data =
            fs::canonicalize(existing_ancestor(data)).unwrap_or_else(|_| data.clone());
        if let Ok(root) = fs::canonicalize(root)
            && canonical_data.starts_with(&root)
        {
            return refuse(PreflightRefusal::DataDirInsideRoot {
                data: data.clone(),
                root,
            });
        }
        match fs::symlink_metadata(data) {
            Err(_) => Ok(()),
            Ok(meta) if !meta.is_dir() => {
                refuse(PreflightRefusal::DataDirNotADirectory(data.clone()))
            }
            Ok(meta) => {
                let parent = data.parent().and_then(|p| fs::metadata(p).ok());
                if parent.is_none_or(|p| p.dev() != meta.dev()) {
                    return refuse(PreflightRefusal::DataDirMountPoint(data.clone()));
                }
                let empty = fs::read_dir(data)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                // Resuming after the clear: what is there is the interrupted restore's own.
                let ours = self
                    .resumed
                    .as_ref()
                    .is_some_and(|r| r.has(StepKind::Clear));
                if !empty && !ours && !data.join("PG_VERSION").is_file() {
                    return refuse(PreflightRefusal::DataDirForeign(data.clone()));
                }
                Ok(())
            }
        }
    }

    /// The tutorial's "Permission denied": checked as the PostgreSQL user before anything is touched.
    fn check_archive_readable(
        &mut self,
        user: &PgUser,
        wal_dir: &Path,
    ) -> Result<(), RestoreError> {
        let sample = self
            .client
            .wal
            .segments
            .iter()
            .rev()
            .find(|s| !s.partial)
            .map(|s| wal_dir.join(s.file_name()));
        let mut command = user.command("sh");
        let script = match &sample {
            Some(file) => format!(
                "test -r {0} && test -x {0} && head -c 1 {1} > /dev/null",
                local::shell_quote(&wal_dir.to_string_lossy()),
                local::shell_quote(&file.to_string_lossy())
            ),
            None => format!(
                "test -r {0} && test -x {0}",
                local::shell_quote(&wal_dir.to_string_lossy())
            ),
        };
        command.arg("-c").arg(script);
        let ok = command.status().map(|s| s.success()).unwrap_or(false);
        if ok {
            return Ok(());
        }
        Err(RestoreError::Preflight(
            PreflightRefusal::ArchiveUnreadable {
                wal_dir: wal_dir.to_owned(),
                user: user.name.clone(),
            },
        ))
    }
}
