//! Deep verification: every byte that matters read and checked, results
//! remembered per file so a re-run checks only what is new or changed.
//!
//! Each WAL segment is read to its end (gzip CRC and length when
//! compressed) and its long page header compared with what the archive
//! claims: the base backup's system identifier, the archive's segment size,
//! and the segment the file name says. Both base tarballs are read to their
//! end. Verdicts are cached by client, file name, size and mtime outside
//! the backup root (the archive is read-only to walwarden).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{BaseFileKind, Client};
use crate::health::{Problem, ProblemCode, Status};
use crate::verify::{check_base_backup, check_segment};
use crate::wal::RawSegmentName;

pub fn default_cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("deep-verify.json"))
}

pub use crate::verify::SegmentVerdict as Verdict;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    size: u64,
    mtime_ns: u128,
    verdict: Verdict,
    checked_at: u64,
}

/// Verdicts of earlier runs, keyed by `client/file`.
#[derive(Debug, Default)]
pub struct DeepCache {
    path: Option<PathBuf>,
    entries: HashMap<String, Remembered>,
    changed: bool,
}

impl DeepCache {
    pub fn load(path: Option<&Path>) -> DeepCache {
        let entries = path
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        DeepCache {
            path: path.map(Path::to_owned),
            entries,
            changed: false,
        }
    }

    pub fn save(&self) -> std::io::Result<()> {
        let (Some(path), true) = (&self.path, self.changed) else {
            return Ok(());
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_extension("json.tmp");
        std::fs::write(
            &temporary,
            serde_json::to_vec(&self.entries).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(temporary, path)
    }
}

/// How far a client is proven, and what is wrong.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepReport {
    pub files_checked: u64,
    pub files_remembered: u64,
    /// The last segment of the contiguous run from the first one, all good.
    pub verified_through: Option<String>,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub verified_at: Option<SystemTime>,
    pub problems: Vec<Problem>,
}

fn mtime_ns(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Reads what is new or changed of one client; `progress(done, total)` per file.
pub fn verify_client(
    client: &Client,
    cache: &mut DeepCache,
    now: SystemTime,
    progress: &mut dyn FnMut(u64, u64),
) -> DeepReport {
    let mut report = DeepReport::default();
    let expected_sysid = client.base.system_identifier();
    let seg_size = client.continuity.segment_size;
    let total = client.wal.segments.len() as u64 + 2;
    let mut done = 0u64;

    // The base tarballs, remembered like any other file.
    let base_dir = client.path.join("base");
    let tarballs: Vec<_> = client
        .base
        .files
        .iter()
        .filter(|f| matches!(f.kind, BaseFileKind::BaseTar | BaseFileKind::PgWalTar))
        .collect();
    let base_key = |name: &str| format!("{}/base/{name}", client.name);
    let base_known = tarballs.iter().all(|f| {
        cache
            .entries
            .get(&base_key(&f.fact.name))
            .is_some_and(|r| r.size == f.fact.size && r.mtime_ns == mtime_ns(f.fact.mtime))
    });
    if !tarballs.is_empty() && !base_known {
        let check = check_base_backup(&base_dir, &mut |_| {});
        report.files_checked += tarballs.len() as u64;
        let verdict = match check.failures.first() {
            None => Verdict::Good,
            Some(reason) => Verdict::Corrupt {
                reason: reason.clone(),
            },
        };
        for file in &tarballs {
            cache.entries.insert(
                base_key(&file.fact.name),
                Remembered {
                    size: file.fact.size,
                    mtime_ns: mtime_ns(file.fact.mtime),
                    verdict: verdict.clone(),
                    checked_at: secs(now),
                },
            );
        }
        cache.changed = true;
    } else {
        report.files_remembered += tarballs.len() as u64;
    }
    for file in &tarballs {
        if let Some(Remembered {
            verdict: Verdict::Corrupt { reason },
            ..
        }) = cache.entries.get(&base_key(&file.fact.name))
        {
            report.problems.push(Problem::new(
                ProblemCode::BaseCorrupt,
                Status::Critical,
                format!("base/{} does not read to its end: {reason}", file.fact.name),
                "the base backup cannot be restored: take a new one (and check the disk it sits on)",
            ));
            break;
        }
    }
    done += 2;
    progress(done, total);

    let wal_dir = client.path.join("wal");
    let mut contiguous = true;
    let mut previous: Option<RawSegmentName> = None;
    for segment in client.wal.segments.iter().filter(|s| !s.partial) {
        let name = segment.file_name();
        let key = format!("{}/wal/{name}", client.name);
        let remembered = cache
            .entries
            .get(&key)
            .filter(|r| r.size == segment.size && r.mtime_ns == mtime_ns(segment.mtime))
            .cloned();
        let verdict = match remembered {
            Some(r) => {
                report.files_remembered += 1;
                r.verdict
            }
            None => {
                let verdict =
                    check_segment(&wal_dir.join(&name)).verdict(expected_sysid, Some(seg_size));
                report.files_checked += 1;
                cache.entries.insert(
                    key,
                    Remembered {
                        size: segment.size,
                        mtime_ns: mtime_ns(segment.mtime),
                        verdict: verdict.clone(),
                        checked_at: secs(now),
                    },
                );
                cache.changed = true;
                verdict
            }
        };
        let follows = previous.is_none_or(|p| {
            p.timeline == segment.name.timeline
                && p.resolve(seg_size).ok().map(|id| id.segment.next())
                    == segment.name.resolve(seg_size).ok().map(|id| id.segment)
        });
        contiguous &= follows && verdict == Verdict::Good;
        if contiguous {
            report.verified_through = Some(segment.name.to_string());
        }
        previous = Some(segment.name);
        if let Some(problem) = problem_for(&name, &verdict) {
            report.problems.push(problem);
        }
        done += 1;
        progress(done, total);
    }
    report.verified_at = Some(now);
    report
}

fn secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn problem_for(name: &str, verdict: &Verdict) -> Option<Problem> {
    let (code, message, fix) = match verdict {
        Verdict::Good => return None,
        Verdict::Corrupt { reason } => (
            ProblemCode::CorruptSegment,
            format!("wal/{name} is damaged: {reason}"),
            "a restore stops here: copy the segment again from the target server's pg_wal if it is still there, else take a new base backup",
        ),
        Verdict::Foreign {
            system_identifier,
            expected,
        } => (
            ProblemCode::ForeignSegment,
            format!(
                "wal/{name} belongs to another database system ({system_identifier}, this client's is {expected})"
            ),
            "another server archives into this folder: check archive_command's paths on every target server, then move the file out",
        ),
        Verdict::Misnamed { header_says } => (
            ProblemCode::MisnamedSegment,
            format!("wal/{name} holds segment {header_says} according to its header"),
            "a renamed or mis-copied file: move it out of the archive; the real segment is missing",
        ),
    };
    Some(Problem::new(code, Status::Critical, message, fix))
}
