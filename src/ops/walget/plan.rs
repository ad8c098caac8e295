//! The plan a restore writes for `walwarden wal-get`, beside the data
//! directory (`<data>.walwarden-wal-get.json`), and the `restore_command`
//! line that names it.
//!
//! The plan holds what the helper cannot learn from PostgreSQL's `%f %p`:
//! where the archive is, which database system the base backup belongs to,
//! the segment size, and the line of timelines the restore follows with the
//! switch points, so it knows which file comes next and which timelines may
//! appear in a segment's header. It also names the spool and the request log
//! (both beside the data directory, on the data directory's file system so
//! a spooled segment is handed over by a rename) and bounds the prefetch.
//! The plan is plain JSON, readable by the PostgreSQL user.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::WalGetError;
use crate::archive::catalog::Client;
use crate::archive::continuity::TimelineSpan;
use crate::archive::wal::{Lsn, RawSegmentName, SegmentId, SegmentNo, Timeline, validate_seg_size};

pub const PLAN_VERSION: u32 = 1;

/// One timeline of the restore's line: it serves segments from `begin`
/// (the switch point from its parent) up to `end` (its child's switch point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTimeline {
    pub timeline: u32,
    #[serde(with = "lsn_text")]
    pub begin: Lsn,
    #[serde(default, with = "opt_lsn_text")]
    pub end: Option<Lsn>,
}

/// What the restore knows and the helper needs; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalGetPlan {
    pub version: u32,
    /// The client's `wal/` folder (absolute).
    pub archive_dir: PathBuf,
    /// The restored data directory (absolute): its signal files and
    /// postmaster.pid tell the prefetcher when to stop.
    pub data_dir: PathBuf,
    /// The base backup's (pg_control's) system identifier, as decimal text.
    #[serde(with = "u64_text")]
    pub system_identifier: u64,
    pub segment_size: u32,
    /// Oldest timeline first.
    pub line: Vec<LineTimeline>,
    /// The first segment the restore needs (the base backup's start).
    pub first_segment: Option<String>,
    /// The newest segment of the line when the plan was written: a miss
    /// at or before it is a gap, after it the normal end of the archive.
    pub last_segment: Option<String>,
    /// With a recovery target: the segment the replay is expected to stop
    /// in (see [`PlanParts::target_segment`]). Only progress reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_segment: Option<String>,
    pub spool_dir: PathBuf,
    /// The spool never holds more (at least one segment is always allowed).
    pub spool_max_bytes: u64,
    /// How many segments ahead of PostgreSQL's last request are kept ready.
    pub prefetch_depth: u32,
    /// Decompressing threads of the prefetcher.
    pub workers: u32,
    /// The prefetcher stops after this long without a request.
    pub idle_timeout_secs: u64,
    /// JSON lines, one per request (see `progress`).
    pub request_log: PathBuf,
}

/// How hard to prefetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub prefetch_depth: u32,
    pub spool_max_bytes: u64,
    /// 0: one less than the cores, at least two, at most four.
    pub workers: u32,
    pub idle_timeout: Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            prefetch_depth: 8,
            spool_max_bytes: 512 << 20,
            workers: 0,
            // Long enough for a 1 GiB segment's replay, short enough that a
            // server paused at its target does not keep a spool for long.
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The restore's facts a plan is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanParts {
    pub archive_dir: PathBuf,
    pub data_dir: PathBuf,
    pub system_identifier: u64,
    pub segment_size: u32,
    /// The line the restore follows (the same one its
    /// `recovery_target_timeline` makes PostgreSQL follow).
    pub line: Vec<TimelineSpan>,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    /// With a recovery target: the first segment of the line that arrived
    /// after the target time, so the replay is expected to stop in it (its
    /// last commit is later than the target). The replay's progress is
    /// measured to it, not to the line's end it will never reach.
    pub target_segment: Option<String>,
}

impl PlanParts {
    /// The client's archive, base backup and continuity, restored into `data_dir`.
    pub fn from_client(client: &Client, data_dir: &Path) -> Result<PlanParts, WalGetError> {
        Ok(PlanParts {
            archive_dir: client.path.join("wal"),
            data_dir: data_dir.to_owned(),
            system_identifier: client
                .base
                .system_identifier()
                .ok_or(WalGetError::NoSystemIdentifier)?,
            segment_size: client.continuity.segment_size,
            line: client.continuity.restore_line.clone(),
            first_segment: client.continuity.needed_from.clone(),
            last_segment: client.continuity.newest.clone(),
            target_segment: None,
        })
    }
}

/// `<data>.walwarden-wal-get.json`, beside the data directory.
pub fn plan_path(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "walwarden-wal-get.json")
}

/// `<data>.walwarden-spool/`, beside the data directory (same file system).
pub fn spool_path(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "walwarden-spool")
}

/// `<data>.walwarden-wal-get.jsonl`, beside the data directory.
pub fn request_log_path(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "walwarden-wal-get.jsonl")
}

fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    // `components` drops a trailing `/`, which would otherwise make `main/.x`.
    let clean: PathBuf = data_dir.components().collect();
    let name = clean
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    clean.with_file_name(format!("{name}.{suffix}"))
}

impl WalGetPlan {
    /// A plan for `parts`, its spool and request log beside the data directory.
    pub fn new(parts: PlanParts, options: &PlanOptions) -> Result<WalGetPlan, WalGetError> {
        if parts.line.is_empty() {
            return Err(WalGetError::EmptyLine);
        }
        // One core stays PostgreSQL's (its startup process replays on one);
        // still two workers on two cores: they only run while the spool is
        // short of its depth, and after a stall two catch up twice as fast
        // (writing fresh page cache, not inflating, is most of their time).
        let workers = match options.workers {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| n.get().saturating_sub(1))
                .clamp(2, 4) as u32,
            n => n,
        };
        let plan = WalGetPlan {
            version: PLAN_VERSION,
            spool_dir: spool_path(&parts.data_dir),
            request_log: request_log_path(&parts.data_dir),
            archive_dir: parts.archive_dir,
            data_dir: parts.data_dir,
            system_identifier: parts.system_identifier,
            segment_size: parts.segment_size,
            line: parts
                .line
                .iter()
                .map(|span| LineTimeline {
                    timeline: span.timeline.0,
                    begin: span.begin,
                    end: span.end,
                })
                .collect(),
            first_segment: parts.first_segment,
            last_segment: parts.last_segment,
            target_segment: parts.target_segment,
            spool_max_bytes: options.spool_max_bytes,
            prefetch_depth: options.prefetch_depth,
            workers,
            idle_timeout_secs: options.idle_timeout.as_secs().max(1),
        };
        plan.validate().map_err(|reason| WalGetError::PlanInvalid {
            path: plan_path(&plan.data_dir),
            reason,
        })?;
        Ok(plan)
    }

    /// Reads and checks a plan file.
    pub fn load(path: &Path) -> Result<WalGetPlan, WalGetError> {
        let bytes = fs::read(path).map_err(|source| WalGetError::PlanRead {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| WalGetError::PlanInvalid {
            path: path.to_owned(),
            reason,
        };
        let plan: WalGetPlan =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        plan.validate().map_err(invalid)?;
        Ok(plan)
    }

    /// What the helper relies on: a known version, a valid segment size,
    /// absolute paths, a line of increasing timelines and switch points,
    /// segment names that make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != PLAN_VERSION {
            return Err(format!(
                "version {} (this walwarden reads version {PLAN_VERSION})",
                self.version
            ));
        }
        validate_seg_size(self.segment_size).map_err(|e| e.to_string())?;
        for (what, path) in [
            ("archive_dir", &self.archive_dir),
            ("data_dir", &self.data_dir),
            ("spool_dir", &self.spool_dir),
            ("request_log", &self.request_log),
        ] {
            if !path.is_absolute() {
                return Err(format!("{what} {} is not absolute", path.display()));
            }
        }
        if self.line.is_empty() {
            return Err("the line of timelines is empty".into());
        }
        for pair in self.line.windows(2) {
            let (older, newer) = (pair[0], pair[1]);
            if newer.timeline <= older.timeline
                || older.end != Some(newer.begin)
                || newer.begin < older.begin
            {
                return Err(format!(
                    "timeline {} does not follow timeline {} on the line",
                    newer.timeline, older.timeline
                ));
            }
        }
        for name in [
            &self.first_segment,
            &self.last_segment,
            &self.target_segment,
        ]
        .into_iter()
        .flatten()
        {
            self.resolve(name)
                .ok_or_else(|| format!("{name:?} is not a segment name"))?;
        }
        if self.prefetch_depth == 0 || self.workers == 0 {
            return Err("prefetch_depth and workers must be at least 1".into());
        }
        Ok(())
    }

    /// A segment name as numbers, for this plan's segment size.
    pub fn resolve(&self, name: &str) -> Option<SegmentId> {
        RawSegmentName::parse(name)?.resolve(self.segment_size).ok()
    }

    pub fn file_name(&self, id: SegmentId) -> String {
        id.file_name(self.segment_size)
    }

    pub fn first(&self) -> Option<SegmentNo> {
        self.first_segment
            .as_deref()
            .and_then(|n| self.resolve(n))
            .map(|id| id.segment)
    }

    pub fn last(&self) -> Option<SegmentNo> {
        self.last_segment
            .as_deref()
            .and_then(|n| self.resolve(n))
            .map(|id| id.segment)
    }

    /// Where the replay's progress is measured to, with replay at
    /// `position`: the target's segment until replay passes it (arrival
    /// times can mislead: an archive copied in one go), else the line's end.
    pub fn progress_end(&self, position: Option<SegmentNo>) -> (Option<SegmentNo>, bool) {
        let target = self
            .target_segment
            .as_deref()
            .and_then(|n| self.resolve(n))
            .map(|id| id.segment);
        match target {
            Some(target) if position.is_none_or(|p| p <= target) => (Some(target), true),
            _ => (self.last(), false),
        }
    }

    /// The file PostgreSQL asks for first for this segment number: the
    /// newest timeline of the line that had begun by then. The segment of a
    /// switch point belongs to the child (PostgreSQL copies the parent's part
    /// into it when it promotes).
    pub fn expected(&self, segment: SegmentNo) -> SegmentId {
        let timeline = self
            .line
            .iter()
            .rev()
            .find(|t| t.begin.segment(self.segment_size) <= segment)
            .or(self.line.first())
            .map_or(1, |t| t.timeline);
        SegmentId {
            timeline: Timeline(timeline),
            segment,
        }
    }

    /// Whether `header` may stand in the first page of the file named for
    /// timeline `named`: the same timeline or one of its ancestors on the
    /// line. The first segment of a timeline that began in mid-segment
    /// carries its parent's timeline in its header.
    pub fn header_timeline_fits(&self, named: Timeline, header: Timeline) -> bool {
        if header == named {
            return true;
        }
        match self.line.iter().position(|t| t.timeline == named.0) {
            Some(at) => self.line[..at].iter().any(|t| t.timeline == header.0),
            // A timeline the plan does not know: PostgreSQL's own history
            // check will judge it; here only a newer header is impossible.
            None => header < named,
        }
    }

    /// The switch point past which `id`'s file holds a timeline's abandoned
    /// tail: `id` is on a timeline of the line that is not its last, at or
    /// after the segment holding the switch to the next one
    /// (XLByteToSeg(switch point)). PostgreSQL asks for such a file when the
    /// child's file of that number is missing (XLogFileReadAnyTLI tries each
    /// timeline of the history, newest first, skipping only those that begin
    /// after the segment) and would replay what the switch abandoned; the
    /// line's file for that number is the child's.
    pub fn abandoned_tail(&self, id: SegmentId) -> Option<Lsn> {
        self.line
            .windows(2)
            .find(|pair| pair[0].timeline == id.timeline.0)
            .map(|pair| pair[1].begin)
            .filter(|switch| id.segment >= switch.segment(self.segment_size))
    }

    /// Recovery is under way while one of its signal files is in the data
    /// directory (PostgreSQL removes recovery.signal when it promotes; 10 and
    /// 11 rename recovery.conf to recovery.done).
    pub fn recovery_in_progress(&self) -> bool {
        recovery_in_progress(&self.data_dir)
    }

    /// Writes the plan file (readable by everyone: it holds no secret),
    /// an empty spool folder and an empty request log, the last two given to
    /// `owner` (the PostgreSQL user, when walwarden runs as root): the helper
    /// writes those and only reads the plan, which stays its writer's (a
    /// plan the PostgreSQL user could rewrite would tell root what to
    /// remove; `finish` does not read it for that either). A spool left by
    /// an earlier restore is emptied: its files were verified against
    /// another plan.
    pub fn write(&self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), WalGetError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| WalGetError::Write { path, source }
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| WalGetError::Write {
            path: path.to_owned(),
            source: io::Error::other(e),
        })?;
        crate::store::write_atomically(path, &bytes, 0o644).map_err(write_err(path))?;

        let spool = super::spool::Spool::new(&self.spool_dir);
        spool.remove().map_err(write_err(&self.spool_dir))?;
        fs::create_dir(&self.spool_dir).map_err(write_err(&self.spool_dir))?;
        fs::set_permissions(&self.spool_dir, fs::Permissions::from_mode(0o700))
            .map_err(write_err(&self.spool_dir))?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.request_log)
            .map_err(write_err(&self.request_log))?;
        if let Some((uid, gid)) = owner {
            for path in [&self.spool_dir, &self.request_log] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(write_err(path))?;
            }
        }
        Ok(())
    }
}

/// Whether `data_dir` holds one of recovery's signal files: see
/// [`WalGetPlan::recovery_in_progress`].
pub fn recovery_in_progress(data_dir: &Path) -> bool {
    ["recovery.signal", "standby.signal", "recovery.conf"]
        .iter()
        .any(|f| data_dir.join(f).exists())
}

/// The restore_command that runs the helper `exe` on the plan at `plan`,
/// before configuration-file quoting: both paths in single quotes for the
/// shell, `%` doubled so PostgreSQL leaves it alone.
pub fn restore_command(exe: &Path, plan: &Path) -> Result<String, WalGetError> {
    Ok(format!(
        "{} wal-get --plan {} %f %p",
        shell_word(exe)?,
        shell_word(plan)?
    ))
}

fn shell_word(path: &Path) -> Result<String, WalGetError> {
    let text = path
        .to_str()
        .filter(|t| !t.chars().any(char::is_control))
        .ok_or_else(|| WalGetError::UnquotablePath(path.to_owned()))?;
    Ok(format!(
        "'{}'",
        text.replace('%', "%%").replace('\'', r"'\''")
    ))
}

mod u64_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::archive::wal::Lsn;

    pub fn serialize<S: Serializer>(value: &Lsn, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        Lsn::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an LSN")))
    }
}

mod opt_lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::archive::wal::Lsn;

    pub fn serialize<S: Serializer>(value: &Option<Lsn>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(lsn) => s.serialize_str(&lsn.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Lsn>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Lsn::parse(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an LSN"))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SEG: u32 = 16 << 20;

    /// Timeline 1, then 2 from 0/8800000 (mid-segment 8), then 3 from 0/C000000.
    pub(crate) fn three_timelines(dir: &Path) -> WalGetPlan {
        let span = |tli, begin, end| TimelineSpan {
            timeline: Timeline(tli),
            begin: Lsn(begin),
            end,
        };
        WalGetPlan::new(
            PlanParts {
                archive_dir: dir.join("wal"),
                data_dir: dir.join("data"),
                system_identifier: 7712094032559808441,
                segment_size: SEG,
                line: vec![
                    span(1, 0, Some(Lsn(0x0880_0000))),
                    span(2, 0x0880_0000, Some(Lsn(0x0C00_0000))),
                    span(3, 0x0C00_0000, None),
                ],
                first_segment: Some("000000010000000000000003".into()),
                last_segment: Some("000000030000000000000010".into()),
                target_segment: None,
            },
            &PlanOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_expected_file_follows_the_line_and_the_switch_segment_is_the_childs() {
        let plan = three_timelines(Path::new("/srv"));
        let name = |segno| plan.file_name(plan.expected(SegmentNo(segno)));
        assert_eq!(name(3), "000000010000000000000003");
        assert_eq!(name(7), "000000010000000000000007");
        assert_eq!(name(8), "000000020000000000000008");
        assert_eq!(name(0xB), "00000002000000000000000B");
        // A switch on a segment boundary: the boundary segment is the child's.
        assert_eq!(name(0xC), "00000003000000000000000C");
        assert_eq!(name(0x10), "000000030000000000000010");
        assert!(plan.header_timeline_fits(Timeline(2), Timeline(1)));
        assert!(plan.header_timeline_fits(Timeline(3), Timeline(1)));
        assert!(plan.header_timeline_fits(Timeline(3), Timeline(3)));
        assert!(!plan.header_timeline_fits(Timeline(2), Timeline(3)));
        assert!(!plan.header_timeline_fits(Timeline(1), Timeline(2)));
        assert!(plan.header_timeline_fits(Timeline(9), Timeline(4)));
        assert!(!plan.header_timeline_fits(Timeline(4), Timeline(9)));
    }

    #[test]
    fn a_parents_file_from_the_switch_segment_on_is_its_abandoned_tail() {
        let plan = three_timelines(Path::new("/srv"));
        let tail = |tli, segno| {
            plan.abandoned_tail(SegmentId {
                timeline: Timeline(tli),
                segment: SegmentNo(segno),
            })
        };
        // Timeline 1 left mid-segment 8, timeline 2 on the boundary of C.
        assert_eq!(tail(1, 7), None);
        assert_eq!(tail(1, 8), Some(Lsn(0x0880_0000)));
        assert_eq!(tail(1, 9), Some(Lsn(0x0880_0000)));
        assert_eq!(tail(1, 0xC), Some(Lsn(0x0880_0000)));
        assert_eq!(tail(2, 8), None);
        assert_eq!(tail(2, 0xB), None);
        assert_eq!(tail(2, 0xC), Some(Lsn(0x0C00_0000)));
        // The line's last timeline and timelines off the line have no tail here.
        assert_eq!(tail(3, 0x40), None);
        assert_eq!(tail(4, 0x9), None);
        // The file the line expects is never a tail.
        for segno in 3..0x20 {
            let id = plan.expected(SegmentNo(segno));
            assert_eq!(plan.abandoned_tail(id), None, "{segno:X}");
        }
    }

    #[test]
    fn paths_sit_beside_the_data_directory_whatever_its_spelling() {
        for data in [
            "/var/lib/postgresql/15/main",
            "/var/lib/postgresql/15/main/",
        ] {
            let data = Path::new(data);
            assert_eq!(
                plan_path(data),
                Path::new("/var/lib/postgresql/15/main.walwarden-wal-get.json")
            );
            assert_eq!(
                spool_path(data),
                Path::new("/var/lib/postgresql/15/main.walwarden-spool")
            );
            assert_eq!(
                request_log_path(data),
                Path::new("/var/lib/postgresql/15/main.walwarden-wal-get.jsonl")
            );
        }
    }

    #[test]
    fn a_plan_round_trips_through_its_file_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        let path = plan_path(&plan.data_dir);
        plan.write(&path, None).unwrap();
        assert_eq!(WalGetPlan::load(&path).unwrap(), plan);
        assert!(plan.spool_dir.is_dir());
        assert!(plan.request_log.is_file());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"7712094032559808441\""), "{text}");
        assert!(text.contains("\"0/8800000\""), "{text}");

        let mut bad = plan.clone();
        bad.line.swap(0, 1);
        fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let err = WalGetPlan::load(&path).unwrap_err().to_string();
        assert!(err.contains("does not follow"), "{err}");
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            WalGetPlan::load(&path),
            Err(WalGetError::PlanInvalid { .. })
        ));
        assert!(matches!(
            WalGetPlan::load(&dir.path().join("none")),
            Err(WalGetError::PlanRead { .. })
        ));
    }

    /// Undoes configuration-file quoting as PostgreSQL's lexer does.
    fn conf_unquote(value: &str) -> String {
        let inner = &value[1..value.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('\'', Some('\'')) | ('\\', Some('\\')) => {
                    out.push(c);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// `%f`/`%p`/`%%` replaced as RestoreArchivedFile does.
    fn substitute(command: &str, f: &str, p: &str) -> String {
        let mut out = String::new();
        let mut chars = command.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.peek() {
                Some('f') => out.push_str(f),
                Some('p') => out.push_str(p),
                Some('%') => out.push('%'),
                _ => {
                    out.push('%');
                    continue;
                }
            }
            chars.next();
        }
        out
    }

    /// The rendered line survives the three quotings: configuration file,
    /// placeholders, shell; the program gets exactly its arguments.
    #[test]
    fn the_restore_command_reaches_the_helper_with_awkward_paths_intact() {
        let dir = tempfile::tempdir().unwrap();
        let awkward = dir.path().join("it's 100% a\\b $HOME");
        fs::create_dir(&awkward).unwrap();
        let exe = awkward.join("print-args");
        fs::write(
            &exe,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
        )
        .unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let plan = awkward.join("main.walwarden-wal-get.json");
        // As recovery_conf writes it: the value in configuration-file quoting.
        let line = format!(
            "restore_command = {}\n",
            crate::pg::conf::conf_string(&restore_command(&exe, &plan).unwrap())
        );
        let value = line
            .strip_prefix("restore_command = ")
            .and_then(|v| v.strip_suffix('\n'))
            .unwrap();
        let command = substitute(
            &conf_unquote(value),
            "000000010000000000000007",
            "pg_wal/RECOVERYXLOG",
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        let args: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            args,
            [
                "wal-get",
                "--plan",
                plan.to_str().unwrap(),
                "000000010000000000000007",
                "pg_wal/RECOVERYXLOG"
            ]
        );
        assert!(matches!(
            restore_command(Path::new("/x\ny"), &plan),
            Err(WalGetError::UnquotablePath(_))
        ));
    }
}
