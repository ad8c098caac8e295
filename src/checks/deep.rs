//! Deep verification: every byte that matters read and checked, results
//! remembered per file so a re-run checks only what is new or changed.
//!
//! Each WAL segment is read to its end (gzip CRC and length when
//! compressed) and its long page header compared with what the archive
//! claims: the base backup's system identifier, the archive's segment size,
//! and the segment the file name says. Both base tarballs are read to their
//! end. Verdicts are cached by client, file name, size and mtime outside
//! the backup root (the archive is read-only to walwarden).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::archive::catalog::Client;
use crate::archive::folder::BaseFileKind;
use crate::archive::wal::{Lsn, RawSegmentName, SegmentId, SegmentNo, Timeline};
use crate::checks::health::{Problem, ProblemCode, Status};
use crate::checks::integrity::{BaseCheck, ReadFailure, check_base_backup, check_segment_sized};

pub fn default_cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("deep-verify.json"))
}

pub use crate::checks::integrity::SegmentVerdict as Verdict;

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
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn load(path: Option<&Path>) -> DeepCache {
        let entries = crate::store::read_json_or_default(path);
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
        crate::store::write_json(path, &self.entries)
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
    /// Whether base.tar.gz matched its backup_manifest; `None` without a manifest.
    pub manifest_verified: Option<bool>,
    pub problems: Vec<Problem>,
    /// Segments judged corrupt, foreign or misnamed: a restore's line stops at the first.
    #[serde(skip)]
    pub unusable: std::collections::BTreeSet<RawSegmentName>,
    /// The recovery point read from the line they leave (set by the job that ran the check).
    #[serde(skip)]
    pub recovery_point: Option<crate::checks::recovery_point::RecoveryPoint>,
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
    let total = client.wal.segments.iter().filter(|s| !s.partial).count() as u64 + 2;
    let mut done = 0u64;

    // The base tarballs, remembered like any other file.
    let base_dir = client.base_dir();
    let tarballs: Vec<_> = client
        .base
        .files
        .iter()
        .filter(|f| matches!(f.kind, BaseFileKind::BaseTar | BaseFileKind::PgWalTar))
        .collect();
    let base_key = |name: &str| format!("{}/base/{name}", client.name);
    let manifest_file = client
        .base
        .files
        .iter()
        .find(|f| f.kind == BaseFileKind::Manifest);
    let manifest_key = base_key("backup_manifest");
    let known = |cache: &DeepCache, key: &str, fact: &crate::archive::folder::FileFact| {
        cache
            .entries
            .get(key)
            .is_some_and(|r| r.size == fact.size && r.mtime_ns == mtime_ns(fact.mtime))
    };
    let base_known = tarballs
        .iter()
        .all(|f| known(cache, &base_key(&f.fact.name), &f.fact))
        && manifest_file.is_none_or(|f| known(cache, &manifest_key, &f.fact));
    let base_needed = !tarballs.is_empty() && !base_known;

    // Which segments need reading, before anything is read.
    let wal_dir = client.wal_dir();
    let segments: Vec<_> = client.wal.segments.iter().filter(|s| !s.partial).collect();
    let keys: Vec<String> = segments
        .iter()
        .map(|s| format!("{}/wal/{}", client.name, s.file_name()))
        .collect();
    let mut verdicts: Vec<Option<Verdict>> = segments
        .iter()
        .zip(&keys)
        .map(|(segment, key)| {
            cache
                .entries
                .get(key)
                .filter(|r| r.size == segment.size && r.mtime_ns == mtime_ns(segment.mtime))
                .map(|r| r.verdict.clone())
        })
        .collect();
    let remembered = verdicts.iter().filter(|v| v.is_some()).count() as u64;
    report.files_remembered += remembered;
    done += remembered;
    let unknown: Vec<usize> = (0..segments.len())
        .filter(|&i| verdicts[i].is_none())
        .collect();
    let paths: Vec<PathBuf> = unknown
        .iter()
        .map(|&i| wal_dir.join(segments[i].file_name()))
        .collect();

    // The base tarballs are read by one more thread while the segments keep
    // every core busy: a 1 GB base.tar.gz no longer leaves a core idle.
    let (base_check, results) = std::thread::scope(|scope| {
        let base = base_needed.then(|| scope.spawn(|| check_base_backup(&base_dir, &mut |_| {})));
        let results = check_in_parallel(&paths, expected_sysid, seg_size, &mut |_| {
            done += 1;
            progress(done, total);
        });
        let base_check = base.map(|handle| {
            handle.join().unwrap_or_else(|_| BaseCheck {
                failures: vec!["reading the base tarballs failed unexpectedly".into()],
                ..BaseCheck::default()
            })
        });
        (base_check, results)
    });

    let base_check = match base_check {
        Some(check) if check.access.is_some() => {
            // Not read, so neither proven nor damaged; judged again next time.
            if let Some(problem) = check.access.as_ref().and_then(|failure| {
                let verdict = match failure {
                    ReadFailure::NotRegular(kind) => Verdict::NotRegular { kind: *kind },
                    other => Verdict::Unreadable {
                        reason: check.failures.join("; "),
                        denied: matches!(other, ReadFailure::Denied(_)),
                    },
                };
                access_problem("base/ (its tarballs)", &verdict)
            }) {
                report.problems.push(problem);
            }
            None
        }
        other => other,
    };
    if let Some(check) = base_check {
        report.files_checked += tarballs.len() as u64;
        let verdict = match check.failures.first() {
            None => Verdict::Good,
            Some(reason) => Verdict::Corrupt {
                reason: reason.clone(),
            },
        };
        let remember = |fact: &crate::archive::folder::FileFact, verdict: Verdict| Remembered {
            size: fact.size,
            mtime_ns: mtime_ns(fact.mtime),
            verdict,
            checked_at: secs(now),
        };
        for file in &tarballs {
            cache.entries.insert(
                base_key(&file.fact.name),
                remember(&file.fact, verdict.clone()),
            );
        }
        // The manifest's findings, remembered under its name (or base.tar.gz's, when inside it).
        if let Some(outcome) = check
            .manifest
            .as_ref()
            .filter(|o| o.complete || !o.mismatches.is_empty())
        {
            let mut mismatches = outcome.mismatches.clone();
            mismatches.extend(missing_wal(client, &check));
            let verdict = if mismatches.is_empty() {
                Verdict::Good
            } else {
                Verdict::Corrupt {
                    reason: mismatches.join("\n"),
                }
            };
            let fact = manifest_file
                .map(|f| &f.fact)
                .or_else(|| tarballs.first().map(|f| &f.fact));
            if let Some(fact) = fact {
                cache
                    .entries
                    .insert(manifest_key.clone(), remember(fact, verdict));
            }
        } else {
            cache.entries.remove(&manifest_key);
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
    let manifest_verdict = cache.entries.get(&manifest_key).map(|r| &r.verdict);
    report.manifest_verified = manifest_verdict.map(|v| *v == Verdict::Good);
    if let Some(Verdict::Corrupt { reason }) = manifest_verdict {
        let lines: Vec<&str> = reason.lines().collect();
        let shown = lines
            .iter()
            .take(MANIFEST_LINES_SHOWN)
            .copied()
            .collect::<Vec<_>>();
        let more = lines.len().saturating_sub(MANIFEST_LINES_SHOWN);
        report.problems.push(Problem::new(
            ProblemCode::BaseManifestMismatch,
            Status::Critical,
            format!(
                "the base backup does not match its backup_manifest: {}{}",
                shown.join("; "),
                if more > 0 { format!("; and {more} more") } else { String::new() }
            ),
            "the base backup was altered or damaged after pg_basebackup wrote it (or the manifest belongs to another backup): take a new base backup and keep its backup_manifest beside the tarballs",
        ));
    }
    for (index, verdict) in results {
        let i = unknown[index];
        let segment = segments[i];
        report.files_checked += 1;
        // What could not be read is judged again next time (a chmod changes no mtime).
        if verdict.is_about_access() {
            verdicts[i] = Some(verdict);
            continue;
        }
        cache.entries.insert(
            keys[i].clone(),
            Remembered {
                size: segment.size,
                mtime_ns: mtime_ns(segment.mtime),
                verdict: verdict.clone(),
                checked_at: secs(now),
            },
        );
        cache.changed = true;
        verdicts[i] = Some(verdict);
    }

    let mut good: HashSet<RawSegmentName> = HashSet::with_capacity(segments.len());
    for (segment, verdict) in segments.iter().zip(&verdicts) {
        let verdict = verdict.as_ref().unwrap_or(&Verdict::Good);
        if *verdict == Verdict::Good {
            good.insert(segment.name);
        } else {
            report.unusable.insert(segment.name);
        }
        if let Some(problem) = problem_for(&segment.file_name(), verdict) {
            report.problems.push(problem);
        }
    }
    // Proven along the restore line, from the base backup's start: the
    // files a restore reads, in the order it reads them.
    let line = &client.continuity;
    let number = |name: Option<&str>| {
        RawSegmentName::parse(name?.get(..24)?)?
            .resolve(seg_size)
            .ok()
            .map(|id| id.segment)
    };
    if let (Some(start), Some(end)) = (
        number(line.needed_from.as_deref()),
        number(line.newest.as_deref()),
    ) {
        let mut segno = start;
        while segno <= end {
            let name = line.expected_name(segno);
            match RawSegmentName::parse(&name) {
                Some(raw) if good.contains(&raw) => report.verified_through = Some(name),
                _ => break,
            }
            segno = segno.next();
        }
    }
    report.problems.extend(timeline_problems(client));
    progress(total, total);
    report.verified_at = Some(now);
    report
}

/// Reads `paths` with one worker per core (inflating is CPU-bound and the
/// files are independent); returns `(index into paths, verdict)` for all of
/// them, calling `progress` on this thread as each one finishes. Memory stays
/// at one read buffer and one inflate window per worker.
/// How far earlier deep checks proved a client, from the cache alone (no
/// file is opened): the contiguous run of remembered good segments from the
/// first, with the time of the newest check in it, and the remembered faults.
/// `None` when nothing of this client is remembered.
pub fn proven_from_memory(client: &Client, cache: &DeepCache) -> Option<DeepReport> {
    let seg_size = client.continuity.segment_size;
    let mut report = DeepReport::default();
    let mut contiguous = true;
    let mut previous: Option<RawSegmentName> = None;
    let mut newest_check = 0u64;
    for segment in client.wal.segments.iter().filter(|s| !s.partial) {
        let key = format!("{}/wal/{}", client.name, segment.file_name());
        let remembered = cache
            .entries
            .get(&key)
            .filter(|r| r.size == segment.size && r.mtime_ns == mtime_ns(segment.mtime));
        let follows = previous.is_none_or(|p| {
            p.timeline == segment.name.timeline
                && p.resolve(seg_size).ok().map(|id| id.segment.next())
                    == segment.name.resolve(seg_size).ok().map(|id| id.segment)
        });
        previous = Some(segment.name);
        let Some(remembered) = remembered else {
            contiguous = false;
            continue;
        };
        report.files_remembered += 1;
        contiguous &= follows && remembered.verdict == Verdict::Good;
        if contiguous {
            report.verified_through = Some(segment.name.to_string());
            newest_check = newest_check.max(remembered.checked_at);
        }
        if let Some(problem) = problem_for(&segment.file_name(), &remembered.verdict) {
            report.problems.push(problem);
        }
    }
    if report.files_remembered == 0 {
        return None;
    }
    report.verified_at = (newest_check > 0)
        .then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(newest_check));
    report.manifest_verified = cache
        .entries
        .get(&format!("{}/base/backup_manifest", client.name))
        .map(|r| r.verdict == Verdict::Good);
    Some(report)
}

fn check_in_parallel(
    paths: &[PathBuf],
    expected_sysid: Option<u64>,
    seg_size: u32,
    progress: &mut dyn FnMut(usize),
) -> Vec<(usize, Verdict)> {
    let mut results = Vec::with_capacity(paths.len());
    let finished = crate::pool::run(
        paths,
        crate::pool::cores(),
        |path| check_segment_sized(path, Some(seg_size)).verdict(expected_sysid, Some(seg_size)),
        |index, verdict| {
            progress(index);
            results.push((index, verdict));
        },
    );
    // A reader that panicked is a bug, not a verdict on the file: say so, loudly.
    if let Err(panic) = finished {
        panic!("deep check of {}: {panic}", paths[panic.index].display());
    }
    results
}

/// Timeline history against the segments: timeline N begins at the switch
/// point of the last line of `N.history`, so a segment of N numbered before
/// the segment holding that point cannot be N's (a segment renamed onto the
/// wrong timeline, or a history file from another cluster). Pure: the scan
/// has read and parsed the history files already.
fn timeline_problems(client: &Client) -> Vec<Problem> {
    let seg_size = client.continuity.segment_size;
    let mut problems = Vec::new();
    for history in &client.wal.histories {
        let Ok(entries) = &history.entries else {
            continue; // unreadable: the ordinary check reports it (wal_gap)
        };
        let file = &history.fact.name;
        let backwards = entries
            .windows(2)
            .find(|w| w[1].parent <= w[0].parent || w[1].switch_point < w[0].switch_point);
        let last = entries.last();
        if let Some(w) = backwards {
            problems.push(timeline_problem(format!(
                "wal/{file}: line \"{} {}\" follows \"{} {}\": timelines and switch points must grow",
                w[1].parent.0, w[1].switch_point, w[0].parent.0, w[0].switch_point
            )));
            continue;
        }
        if last.is_some_and(|l| l.parent >= history.timeline) {
            problems.push(timeline_problem(format!(
                "wal/{file} names timeline {} as the parent of timeline {}",
                last.map_or(0, |l| l.parent.0),
                history.timeline.0
            )));
            continue;
        }
        let Some(switch) = last.map(|l| l.switch_point) else {
            continue;
        };
        let first = switch.segment(seg_size);
        let early: Vec<String> = client
            .wal
            .segments
            .iter()
            .filter(|s| Timeline(s.name.timeline) == history.timeline)
            .filter(|s| s.name.resolve(seg_size).is_ok_and(|id| id.segment < first))
            .map(|s| s.file_name())
            .collect();
        if let Some(name) = early.first() {
            let more = if early.len() > 1 {
                format!(" (and {} more)", early.len() - 1)
            } else {
                String::new()
            };
            problems.push(timeline_problem(format!(
                "wal/{name}{more} is on timeline {} before it began: {file} says it branched off timeline {} at {switch}, in segment {}",
                history.timeline.0,
                last.map_or(0, |l| l.parent.0),
                SegmentId {
                    timeline: history.timeline,
                    segment: first
                }
                .file_name(seg_size)
            )));
        }
    }
    problems
}

fn timeline_problem(message: String) -> Problem {
    Problem::new(
        ProblemCode::TimelineMismatch,
        Status::Critical,
        message,
        "a restore following this timeline would replay the wrong WAL: move the misplaced segment out (or the foreign .history file), then check which server archives into this folder",
    )
}

/// How many of the manifest's differences a problem message lists.
const MANIFEST_LINES_SHOWN: usize = 5;

/// The segments of the manifest's WAL ranges found neither in pg_wal.tar.gz
/// nor in the archive: without them the backup never becomes consistent.
/// One line per range, with the true count: a range is never walked
/// segment by segment (a hostile manifest may name 2^40 of them), only the
/// segments present are.
fn missing_wal(client: &Client, check: &crate::checks::integrity::BaseCheck) -> Vec<String> {
    let Some(outcome) = &check.manifest else {
        return Vec::new();
    };
    let seg_size = client.continuity.segment_size;
    let mut missing = Vec::new();
    for range in &outcome.wal_ranges {
        let timeline = Timeline(range.timeline);
        let first = range.start.segment(seg_size);
        let last = Lsn(range.end.0.saturating_sub(1).max(range.start.0)).segment(seg_size);
        let in_range =
            |id: SegmentId| id.timeline == timeline && first <= id.segment && id.segment <= last;
        let tarball = check.pg_wal_segments.iter().filter_map(|name| {
            RawSegmentName::parse(name.get(..24)?)?
                .resolve(seg_size)
                .ok()
        });
        let archived = client
            .wal
            .segments
            .iter()
            .filter(|s| !s.partial)
            .filter_map(|s| s.name.resolve(seg_size).ok());
        let present: std::collections::BTreeSet<SegmentNo> = tarball
            .chain(archived)
            .filter(|id| in_range(*id))
            .map(|id| id.segment)
            .collect();
        let total = last.0 - first.0 + 1;
        let absent = total - present.len() as u64;
        if absent == 0 {
            continue;
        }
        // The first absent one: at most present.len() + 1 steps from the start.
        let mut number = first;
        while present.contains(&number) {
            number = number.next();
        }
        let name = SegmentId {
            timeline,
            segment: number,
        }
        .file_name(seg_size);
        let what = if absent == 1 {
            format!("segment {name}")
        } else {
            format!("{absent} segments (the first {name})")
        };
        missing.push(format!(
            "{what} of the manifest's WAL range {}..{} on timeline {} {} neither in pg_wal.tar.gz nor in the archive",
            range.start,
            range.end,
            range.timeline,
            if absent == 1 { "is" } else { "are" }
        ));
        if missing.len() > MANIFEST_LINES_SHOWN {
            return missing;
        }
    }
    missing
}

fn secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A file that was not read, as a problem: never damage. `shown` names it
/// under the client's folder (`wal/NAME`, `base/base.tar.gz`).
fn access_problem(shown: &str, verdict: &Verdict) -> Option<Problem> {
    match verdict {
        Verdict::NotRegular { kind } => Some(Problem::new(
            ProblemCode::UnexpectedFile,
            Status::Warning,
            format!(
                "{shown} is a {}, not a regular file: never opened, and a restore cannot read it",
                kind.as_str()
            ),
            "remove it and put the real file in its place (a segment from the target server's pg_wal, a new base backup): only regular files belong in the archive",
        )),
        Verdict::Unreadable { reason, denied } => {
            let (code, fix) = if *denied {
                (
                    ProblemCode::PermissionDenied,
                    crate::checks::health::PERMISSION_FIX,
                )
            } else {
                (
                    ProblemCode::Unreadable,
                    "an error of the system, not of the file: check the disk and the file system (dmesg), then check again",
                )
            };
            Some(Problem::new(
                code,
                Status::Unknown,
                format!("cannot read {shown}: {reason}; its content is unknown"),
                fix,
            ))
        }
        _ => None,
    }
}

pub(crate) fn problem_for(name: &str, verdict: &Verdict) -> Option<Problem> {
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
        Verdict::NotRegular { .. } | Verdict::Unreadable { .. } => {
            return access_problem(&format!("wal/{name}"), verdict);
        }
    };
    Some(Problem::new(code, Status::Critical, message, fix))
}
