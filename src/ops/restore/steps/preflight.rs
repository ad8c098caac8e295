//! Step 1, the preflight: everything checked before anything is touched
//! (a complete base backup, the binaries' major version, the data
//! directory, free space, the tarballs' entries, the WAL to consistency, the
//! base backup's settings on this host, the archive readable as the
//! PostgreSQL user). `proposed_settings` works out the settings beforehand,
//! for a face to offer.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use super::line::LinePlan;
use super::{Checked, Runner, StepKind};
use crate::archive::catalog::Client;
use crate::archive::folder::BaseFileKind;
use crate::ops::restore::error::{PreflightRefusal, ProposalError, RestoreError};
use crate::ops::restore::files::existing_ancestor;
use crate::ops::restore::host_settings::{self, Host};
use crate::ops::restore::journal::Outcome;
use crate::ops::restore::recovery_conf::{ArchiveLayout, TargetTime};
use crate::ops::restore::request::RestoreRequest;
use crate::ops::restore::request::{GUARDED_SETTINGS, guarded_why};
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
        // restore_command and the recovery settings are text PostgreSQL reads:
        // a path that is not UTF-8 cannot be written into them faithfully.
        if client.wal_dir().to_str().is_none() {
            return refuse(PreflightRefusal::PathNotUtf8 {
                path: crate::display::escape_path(&client.wal_dir()),
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
        if !request.forced.iter().any(|f| f == "unsafe-settings")
            && let Some((key, _)) = request
                .settings
                .iter()
                .find(|(key, _)| GUARDED_SETTINGS.contains(&key.as_str()))
        {
            return refuse(PreflightRefusal::GuardedSetting {
                key: key.clone(),
                why: guarded_why(key).unwrap_or_default(),
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
                entry: crate::display::escape_str(&bad.entry),
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
        let LinePlan {
            line,
            target,
            recovery_point,
        } = self.plan_line()?;
        self.check_host_settings(&plan.config_files, &pg_bin)?;
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
        self.check_helper_runnable(&user, &request.helper_exe)?;
        let helper_plan = helper_plan(client, &line, target.as_ref(), &request.data_dir)?;
        // The restore_command line is written after the data directory is
        // cleared: a path it cannot quote (control characters, not UTF-8)
        // is refused now, before anything is touched.
        crate::ops::walget::plan::restore_command(
            &request.helper_exe,
            &crate::ops::walget::plan::plan_path(&request.data_dir),
        )
        .map_err(|e| RestoreError::Preflight(PreflightRefusal::HelperPlan(e)))?;
        let compressed = client.wal.segments.iter().any(|s| s.compressed);
        let plain = client.wal.segments.iter().any(|s| !s.compressed);
        let layout = match (compressed, plain) {
            (true, true) => ArchiveLayout::Both,
            (false, true) => ArchiveLayout::Plain,
            _ => ArchiveLayout::Compressed,
        };
        let window = match (line.restorable_from, &recovery_point, line.restorable_to) {
            (Some(from), Some(point), _) => format!(
                "restorable from {} to {} (the last commit)",
                crate::display::time_text(from),
                crate::display::time_text_precise(point.transaction.time)
            ),
            (Some(from), None, Some(to)) => format!(
                "restorable from {} to {}",
                crate::display::time_text(from),
                crate::display::time_text(to)
            ),
            _ => "restorable window unknown".into(),
        };
        let timeline = match (line.target_timeline, line.base_timeline) {
            (Some(t), Some(b)) if t != b => {
                format!("; follows timeline {} to timeline {}", b.0, t.0)
            }
            (Some(t), _) => format!("; timeline {}", t.0),
            _ => String::new(),
        };
        let target_text = target.map_or_else(
            || format!("to the end ({})", line.newest.as_deref().unwrap_or("?")),
            |t| format!("to {t}"),
        );
        self.done(
            StepKind::Preflight,
            &format!(
                "PostgreSQL {major} backup, {} to unpack, {window}{timeline}; restoring {target_text}",
                crate::display::human_bytes(needed)
            ),
        )?;
        let default_log = request.data_dir.join("log").join("walwarden-restore.log");
        let (service, log) = resolve_service(request, major, &pg_bin, default_log);
        // The server writes its log where it is told: never into the archive.
        crate::store::guard::check_write(&log, "the server log")
            .map_err(PreflightRefusal::Archive)?;
        Ok(Checked {
            user,
            pg_bin,
            major,
            base_tar: base_dir.join(&base_tar.fact.name),
            pg_wal_tar: base_dir.join(&pg_wal_tar.fact.name),
            layout,
            archive_last: line.restorable_through.clone(),
            log,
            service,
            line,
            target,
            recovery_point,
            helper_plan,
        })
    }

    /// The restore_command is this walwarden (`wal-get`): the PostgreSQL
    /// user must reach and run it by its absolute path.
    fn check_helper_runnable(&mut self, user: &PgUser, exe: &Path) -> Result<(), RestoreError> {
        let refused = || {
            Err(RestoreError::Preflight(
                PreflightRefusal::HelperNotRunnable {
                    exe: exe.to_owned(),
                    user: user.name.clone(),
                },
            ))
        };
        if !exe.is_absolute() {
            return refused();
        }
        let mut command = user.command("sh");
        command.arg("-c").arg(format!(
            "test -f {0} && test -x {0}",
            local::shell_quote(&exe.to_string_lossy())
        ));
        if command.status().map(|s| s.success()).unwrap_or(false) {
            Ok(())
        } else {
            refused()
        }
    }

    /// The base backup's settings that cannot work here, unless the
    /// engineer's `--set` already answers them (or `--force host-settings`).
    fn check_host_settings(
        &mut self,
        config_files: &std::collections::BTreeMap<String, String>,
        pg_bin: &Path,
    ) -> Result<(), RestoreError> {
        let host = LocalHost {
            pg_bin: Some(pg_bin.to_owned()),
            data_dir: Some(self.request.data_dir.clone()),
        };
        let found = host_settings::mismatches(
            config_files,
            &self.request.settings,
            &self.request.data_dir,
            &host,
        );
        if found.is_empty() {
            return Ok(());
        }
        let refusal = PreflightRefusal::HostSettings { found };
        if !self.request.forced.iter().any(|f| f == "host-settings") {
            return Err(refusal.into());
        }
        self.driver.progress(
            StepKind::Preflight,
            &format!("FORCED past (--force host-settings): {refusal}"),
        );
        self.journal
            .record("forced", Outcome::Skipped, refusal.to_string(), None)
            .map_err(|source| RestoreError::Journal {
                path: self.journal.path().to_owned(),
                source,
            })
    }

    /// Refuses a data directory that is neither empty nor a PostgreSQL one,
    /// a mount point, or a place inside the backup root.
    fn check_data_dir(&mut self, client_dir: &Path) -> Result<(), RestoreError> {
        let data = &self.request.data_dir;
        let refuse = |why: PreflightRefusal| Err(RestoreError::Preflight(why));
        // Inside, equal to or containing the root: the archive's guard says.
        let root = client_dir.parent().unwrap_or(client_dir);
        crate::store::guard::check_write_against(
            data,
            "the data directory",
            &[root.to_owned(), client_dir.to_owned()],
        )
        .map_err(PreflightRefusal::Archive)?;
        // `main/..` would put its siblings (the aside folder, the plan, the
        // spool) inside the folder it names.
        if data
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return refuse(PreflightRefusal::DataDirNotPlain(data.clone()));
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
                // `test -f`: a fifo in the archive would make `head` wait for ever.
                "test -r {0} && test -x {0} && test -f {1} && ! test -h {1} && head -c 1 {1} > /dev/null",
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

/// What `walwarden wal-get` is told for a restore of `client` into
/// `data_dir` along `line`: the line the preflight judged (`--timeline`
/// and the segments found bad included), not the scan's.
fn helper_plan(
    client: &Client,
    line: &crate::archive::continuity::Continuity,
    target: Option<&TargetTime>,
    data_dir: &Path,
) -> Result<crate::ops::walget::WalGetPlan, RestoreError> {
    use crate::ops::walget::{PlanOptions, PlanParts, WalGetPlan};
    let refusal = |e| RestoreError::Preflight(PreflightRefusal::HelperPlan(e));
    let from_client = PlanParts::from_client(client, data_dir).map_err(refusal)?;
    let parts = PlanParts {
        // Absolute whatever the root was given as: the helper runs in the data directory.
        archive_dir: std::path::absolute(&from_client.archive_dir)
            .unwrap_or(from_client.archive_dir),
        segment_size: line.segment_size,
        line: line.restore_line.clone(),
        first_segment: line.needed_from.clone(),
        last_segment: line.newest.clone(),
        // Where the target is expected to stop the replay, for its progress.
        target_segment: target
            .and_then(|t| t.system_time())
            .and_then(|at| line.first_arrived_at_or_after(&client.wal, at)),
        ..from_client
    };
    WalGetPlan::new(parts, &PlanOptions::default()).map_err(refusal)
}

/// The settings a restore of `client` with `request` needs on this host:
/// the base backup's configuration (read from base.tar.gz once per process,
/// as the preflight reads it) judged against this machine, each finding
/// with its fix. What the preflight would refuse, worked out beforehand,
/// for the wizard to pre-fill (and for any face that proposes settings).
///
/// `request.settings` count as already given. An empty `data_dir` means
/// not chosen yet: relative paths are taken to come with the backup, and
/// no server is assumed to run on it (so a port held by the server that a
/// restore into its data directory would stop is proposed away; ask again
/// once the data directory is known).
pub fn proposed_settings(
    client: &Client,
    request: &RestoreRequest,
) -> Result<SettingsProposal, ProposalError> {
    let Some(base_tar) = client.base.file(BaseFileKind::BaseTar) else {
        return Err(ProposalError::NoBaseBackup {
            client: client.name.clone(),
        });
    };
    let plan = unpack::scan_tarball_remembered(&client.base_dir().join(&base_tar.fact.name))
        .map_err(ProposalError::Tarball)?;
    let major = client
        .base
        .pg_version()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    let pg_bin = request
        .pg_bin
        .clone()
        .or_else(|| major.map(local::default_pg_bin));
    let data_dir = Some(request.data_dir.clone()).filter(|d| d.is_absolute());
    let host = LocalHost {
        pg_bin,
        data_dir: data_dir.clone(),
    };
    let findings = host_settings::mismatches(
        &plan.config_files,
        &request.settings,
        data_dir.as_deref().unwrap_or(Path::new("")),
        &host,
    );
    Ok(SettingsProposal {
        settings: host_settings::proposed_pairs(&findings),
        findings,
    })
}

/// What `proposed_settings` found: the settings to give, and each finding with why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsProposal {
    pub settings: Vec<(String, String)>,
    pub findings: Vec<host_settings::HostMismatch>,
}

/// The restore host as the settings check sees it.
struct LocalHost {
    /// Where the backup's major version's binaries are; `None`: unknown.
    pg_bin: Option<std::path::PathBuf>,
    /// Where the backup is restored; `None`: not chosen yet.
    data_dir: Option<std::path::PathBuf>,
}

impl Host for LocalHost {
    fn exists(&self, path: &Path) -> bool {
        // A path inside the data directory comes with the backup (and a
        // relative one is inside it, wherever it will be).
        path.is_relative()
            || self.data_dir.as_ref().is_some_and(|d| path.starts_with(d))
            || fs::symlink_metadata(path).is_ok()
    }

    fn port_taken(&self, port: u16, socket_dirs: &[std::path::PathBuf]) -> bool {
        // The server on this data directory is stopped by the restore itself.
        let ours = self
            .data_dir
            .as_ref()
            .and_then(|d| fs::read_to_string(d.join("postmaster.pid")).ok())
            .and_then(|pid| pid.lines().nth(3)?.trim().parse::<u16>().ok())
            == Some(port);
        if ours {
            return false;
        }
        let socket = format!(".s.PGSQL.{port}");
        socket_dirs.iter().any(|d| d.join(&socket).exists())
            || std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                std::time::Duration::from_millis(300),
            )
            .is_ok()
    }

    fn free_port(&self) -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_or(5433, |a| a.port())
    }

    fn pkglibdir(&self) -> Option<std::path::PathBuf> {
        let prefix = self.pg_bin.as_ref()?.parent()?;
        [prefix.join("lib").join("postgresql"), prefix.join("lib")]
            .into_iter()
            .find(|dir| dir.join("plpgsql.so").exists())
    }

    fn socket_folder(&self) -> std::path::PathBuf {
        let standard = std::path::PathBuf::from("/var/run/postgresql");
        if standard.is_dir() {
            standard
        } else {
            std::path::PathBuf::from("/tmp")
        }
    }
}
