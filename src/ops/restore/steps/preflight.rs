//! Step 1, the preflight: everything checked before anything is touched
//! (a complete base backup, the binaries' major version, the data
//! directory, free space, the tarballs' entries, the WAL to consistency, the
//! archive readable as the PostgreSQL user).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Checked, Runner, StepKind};
use crate::archive::folder::BaseFileKind;
use crate::ops::restore::RestoreError;
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
        let refuse = |why: String| Err(RestoreError::Preflight(why));
        let base_dir = client.base_dir();
        let (Some(base_tar), Some(pg_wal_tar)) = (
            client.base.file(BaseFileKind::BaseTar),
            client.base.file(BaseFileKind::PgWalTar),
        ) else {
            return refuse(format!(
                "{} has no complete base backup (base.tar.gz and pg_wal.tar.gz)",
                client.name
            ));
        };
        if let Some(ts) = client
            .base
            .files
            .iter()
            .find(|f| f.kind == BaseFileKind::Tablespace)
        {
            return refuse(format!(
                "the backup has a tablespace tarball ({}): restoring tablespaces is not supported yet; unpack it by hand to the path in tablespace_map",
                ts.fact.name
            ));
        }
        let Some(backup_version) = client
            .base
            .pg_version()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        else {
            return refuse("PG_VERSION could not be read from base.tar.gz".into());
        };
        let pg_bin = request
            .pg_bin
            .clone()
            .unwrap_or_else(|| local::default_pg_bin(backup_version));
        let major = local::server_major(&pg_bin)?;
        if major != backup_version {
            return refuse(format!(
                "the backup is PostgreSQL {backup_version} but {} is PostgreSQL {major}: a physical backup only restores onto the same major version; install PostgreSQL {backup_version} (--pg-bin), or restore on {backup_version} and move with pg_dumpall -c / psql (the tutorial's last section)",
                pg_bin.display()
            ));
        }
        let user = PgUser::lookup(&request.os_user)?;
        if !user.can_act_as() {
            return refuse(format!(
                "walwarden runs as another user than {}: run it with sudo",
                user.name
            ));
        }
        self.check_data_dir(&client.path)?;
        let plan = unpack::scan_tarball_remembered(&base_dir.join(&base_tar.fact.name))
            .map_err(|e| RestoreError::Preflight(e.to_string()))?;
        let wal_plan = unpack::scan_tarball_remembered(&base_dir.join(&pg_wal_tar.fact.name))
            .map_err(|e| RestoreError::Preflight(e.to_string()))?;
        if let Some(bad) = plan.refused.first().or(wal_plan.refused.first()) {
            return refuse(format!(
                "the tarball has an entry that would escape the data directory: {} ({})",
                bad.entry, bad.reason
            ));
        }
        let needed = plan.disk_bytes + wal_plan.disk_bytes;
        let parent = existing_ancestor(&request.data_dir);
        let free = nix::sys::statvfs::statvfs(&parent)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(u64::MAX);
        if free < needed + needed / 10 {
            return refuse(format!(
                "{} has {} free; the backup unpacks to {} (+10% margin)",
                parent.display(),
                crate::display::human_bytes(free),
                crate::display::human_bytes(needed)
            ));
        }
        if let Some(gap) = client.continuity.gaps.iter().find(|g| g.before_consistency) {
            return refuse(format!(
                "WAL needed to reach consistency is missing ({} .. {}): the base backup cannot be restored; take a new one",
                gap.first, gap.last
            ));
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
        let refuse = |why: String| Err(RestoreError::Preflight(why));
        if !data.is_absolute() {
            return refuse(format!(
                "--data-dir {} must be an absolute path",
                data.display()
            ));
        }
        let root = client_dir.parent().unwrap_or(client_dir);
        let canonical_data =
            fs::canonicalize(existing_ancestor(data)).unwrap_or_else(|_| data.clone());
        if let Ok(root) = fs::canonicalize(root)
            && canonical_data.starts_with(&root)
        {
            return refuse(format!(
                "{} is inside the backup root {}: the archive is never written to",
                data.display(),
                root.display()
            ));
        }
        match fs::symlink_metadata(data) {
            Err(_) => Ok(()),
            Ok(meta) if !meta.is_dir() => refuse(format!("{} is not a directory", data.display())),
            Ok(meta) => {
                let parent = data.parent().and_then(|p| fs::metadata(p).ok());
                if parent.is_none_or(|p| p.dev() != meta.dev()) {
                    return refuse(format!(
                        "{} is a mount point: moving its contents aside would cross file systems; point --data-dir at a folder inside it",
                        data.display()
                    ));
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
                    return refuse(format!(
                        "{} is neither empty nor a PostgreSQL data directory (no PG_VERSION): refusing to clear it",
                        data.display()
                    ));
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
        Err(RestoreError::Preflight(format!(
            "the WAL archive {} is not readable by {}: PostgreSQL would silently recover only to the end of the base backup. Fix: chmod o+rx on the folders up to it and o+r on the files, or add {} to the client's group (chmod -R g+rX)",
            wal_dir.display(),
            user.name,
            user.name
        )))
    }
}
