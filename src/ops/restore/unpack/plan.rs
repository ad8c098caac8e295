//! The pass that refuses before anything is touched: every header of a
//! tarball read and checked as `unpack` would check it, nothing written;
//! safe plans remembered within the process for an unchanged file.

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use super::checks::{Action, EntryChecks};
use super::stream::{Pipeline, for_each_entry, open_source, with_stream};
use super::{REFUSALS_LISTED, Refusal, UnpackError};

/// What one pass over a tarball's headers found, before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarballPlan {
    /// The tarball file's size.
    pub compressed_bytes: u64,
    /// Sum of the regular files' sizes.
    pub unpacked_bytes: u64,
    /// Space the unpacked tree takes at least: files rounded up to 4 KiB
    /// blocks plus one block per directory (for the free-space preflight).
    pub disk_bytes: u64,
    /// Every header that names something (pax global headers excluded).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    /// The first refused entries, in tarball order.
    pub refused: Vec<RefusedEntry>,
    /// How many entries are refused (`refused` lists at most 100).
    pub refused_count: u64,
    /// The configuration files the restored server will read
    /// (postgresql.conf, postgresql.auto.conf, `*.conf` one folder deep),
    /// by their path in the tarball: the preflight judges their settings.
    pub config_files: std::collections::BTreeMap<String, String>,
}

/// Small enough for any real configuration file; a larger one is not read.
const CONFIG_FILE_MAX: u64 = 1024 * 1024;

/// Whether an entry is a configuration file the server reads at start.
fn is_config_file(path: &str) -> bool {
    path.ends_with(".conf") && path.matches('/').count() <= 1 && !path.starts_with("pg_")
}

impl TarballPlan {
    pub fn is_safe(&self) -> bool {
        self.refused_count == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// The entry's name as written in the tarball.
    pub entry: String,
    pub reason: Refusal,
}

/// Safe plans already scanned by this process, by path, size and mtime.
type PlanKey = (PathBuf, u64, SystemTime);
static SAFE_PLANS: std::sync::Mutex<Vec<(PlanKey, TarballPlan)>> =
    std::sync::Mutex::new(Vec::new());

/// [`scan_tarball`], remembered within this process for an unchanged file:
/// the wizard's real run after its dry run does not inflate the tarball again
/// before unpacking it. Only safe plans are remembered, and [`unpack`](super::unpack) applies
/// the same checks again as it writes, so the memo never weakens them.
fn plan_key(path: &Path) -> Option<PlanKey> {
    let meta = fs::metadata(path).ok()?;
    Some((path.to_owned(), meta.len(), meta.modified().ok()?))
}

pub fn scan_tarball_remembered(path: &Path) -> Result<TarballPlan, UnpackError> {
    let key = plan_key(path);
    if let Some(key) = &key
        && let Ok(plans) = SAFE_PLANS.lock()
        && let Some((_, plan)) = plans.iter().find(|(k, _)| k == key)
    {
        return Ok(plan.clone());
    }
    let plan = scan_tarball(path)?;
    if let Some(key) = key
        && plan.is_safe()
        && let Ok(mut plans) = SAFE_PLANS.lock()
    {
        plans.retain(|(k, _)| k.0 != key.0);
        plans.push((key, plan.clone()));
    }
    Ok(plan)
}

/// Whether this process holds a safe plan for `path` as it is now.
pub fn plan_remembered(path: &Path) -> bool {
    let Some(key) = plan_key(path) else {
        return false;
    };
    SAFE_PLANS
        .lock()
        .is_ok_and(|plans| plans.iter().any(|(k, _)| *k == key))
}

/// Reads every header of `path` (inflating all of it) and applies the checks
/// [`unpack`](super::unpack) applies, without writing anything.
pub fn scan_tarball(path: &Path) -> Result<TarballPlan, UnpackError> {
    let compressed = Arc::new(AtomicU64::new(0));
    let (source, compressed_bytes) = open_source(path, &compressed)?;
    let mut plan = TarballPlan {
        compressed_bytes,
        ..TarballPlan::default()
    };
    let mut checks = EntryChecks::default();
    with_stream(path, source, Pipeline::for_this_machine(), |reader| {
        for_each_entry(reader, path, |entry, header| {
            let checked = match checks.check(&header) {
                Ok(checked) => checked,
                Err(reason) => {
                    plan.entries += 1;
                    plan.refused_count += 1;
                    if plan.refused.len() < REFUSALS_LISTED {
                        plan.refused.push(RefusedEntry {
                            entry: header.name(),
                            reason,
                        });
                    }
                    return Ok(());
                }
            };
            match checked.map(|c| c.action) {
                None => return Ok(()),
                Some(Action::File) => {
                    let name = header.name();
                    let name = name.strip_prefix("./").unwrap_or(&name);
                    if is_config_file(name) && entry.size() <= CONFIG_FILE_MAX {
                        let mut text = String::new();
                        // Not UTF-8: not a configuration file PostgreSQL accepts either.
                        if std::io::Read::read_to_string(entry, &mut text).is_ok() {
                            plan.config_files.insert(name.to_owned(), text);
                        }
                    }
                    plan.files += 1;
                    plan.unpacked_bytes += entry.size();
                    plan.disk_bytes += entry.size().div_ceil(4096) * 4096;
                }
                Some(Action::Dir) => {
                    plan.dirs += 1;
                    plan.disk_bytes += 4096;
                }
                Some(Action::Symlink(_) | Action::HardLink(_)) => plan.links += 1,
            }
            plan.entries += 1;
            Ok(())
        })
    })?;
    Ok(plan)
}
