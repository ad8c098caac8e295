//! The checks as jobs both faces run: `check` in the foreground, the
//! dashboard on its background workers. Each loads the cache it needs, runs,
//! remembers its verdicts (so a cron `check` and the dashboard share them),
//! and reports progress through a callback; the face only decides how to
//! show it.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use thiserror::Error;

use crate::archive::base_cache;
use crate::archive::catalog::{self, Catalog, CatalogError, Client, ScanOptions};
use crate::checks::deep::{self, DeepCache, DeepReport};
use crate::checks::quick::{self, QuickCache, QuickFindings, QuickInput};
use crate::checks::recovery_point::{self, PointCache};

#[derive(Debug, Error)]
pub enum JobError {
    #[error("cannot read the client: {0}")]
    Scan(#[from] CatalogError),
    /// The check ran, but its verdicts could not be written back.
    #[error("checked, but cannot remember the {what} results: {source}")]
    Remember {
        what: &'static str,
        source: io::Error,
    },
}

/// Reads every file of each client to its end (what the deep cache does not
/// prove already) and remembers the verdicts; `progress(client, done, total)`.
pub fn deep_check(
    clients: &[Client],
    now: SystemTime,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<(String, DeepReport)>, JobError> {
    let mut cache = DeepCache::load(deep::default_cache_path().as_deref());
    let mut points = PointCache::load(recovery_point::default_cache_path().as_deref());
    let reports = clients
        .iter()
        .map(|client| {
            let mut report = deep::verify_client(client, &mut cache, now, &mut |done, total| {
                progress(&client.name, done, total)
            });
            report.recovery_point = points.point_for(client, &report.unusable);
            (client.name.clone(), report)
        })
        .collect();
    cache.save().map_err(|source| JobError::Remember {
        what: "deep-check",
        source,
    })?;
    // Remembering points is a speed-up only.
    let _ = points.save();
    Ok(reports)
}

/// A deep check of one client as it is now (re-read first).
pub fn deep_check_client(
    root: &Path,
    name: &str,
    now: SystemTime,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DeepReport, JobError> {
    let options = ScanOptions {
        cache: base_cache::default_cache_path(),
        ..ScanOptions::default()
    };
    let client = catalog::scan_client(root, name, &options)?;
    let mut reports = deep_check(std::slice::from_ref(&client), now, &mut |_, done, total| {
        progress(done, total)
    })?;
    Ok(reports
        .pop()
        .map_or_else(DeepReport::default, |(_, report)| report))
}

/// How far earlier deep checks (here or `check --deep` from cron) proved
/// each client: cache lookups only, no file opened.
pub fn deep_from_memory(catalog: &Catalog) -> Vec<(String, DeepReport)> {
    let cache = DeepCache::load(deep::default_cache_path().as_deref());
    if cache.is_empty() {
        return Vec::new();
    }
    catalog
        .clients
        .iter()
        .filter_map(|c| Some((c.name.clone(), deep::proven_from_memory(c, &cache)?)))
        .collect()
}

/// What the quick check found, and whether its verdicts were remembered.
#[derive(Debug)]
pub struct QuickChecked {
    pub findings: Vec<(String, QuickFindings)>,
    /// Failing to remember costs only a re-read next time; `check` says so.
    pub remembered: io::Result<()>,
}

/// The quick check (gzip trailer, first page) of every segment not judged
/// before: each client's problems with the remembered ones, the segments
/// found unusable, and the recovery point of the line they leave.
pub fn quick_check(inputs: &[QuickInput<'_>]) -> QuickChecked {
    let mut cache = QuickCache::load(quick::default_cache_path().as_deref());
    let mut points = PointCache::load(recovery_point::default_cache_path().as_deref());
    let findings = inputs
        .iter()
        .map(|input| {
            let problems = cache.check(input);
            let unusable = cache.unusable(input);
            let recovery_point = points.point_for(&input.client, &unusable);
            (
                input.name().to_owned(),
                QuickFindings {
                    problems,
                    unusable,
                    recovery_point,
                },
            )
        })
        .collect();
    // Remembering points is a speed-up only; the verdicts' cache is what `check` reports on.
    let _ = points.save();
    QuickChecked {
        findings,
        remembered: cache.save(),
    }
}
