//! Which segments a restore of a client needs, whether they are there, and
//! how far a restore would get, judged the way PostgreSQL's recovery reads
//! the archive.
//!
//! The restore line starts at the base backup's timeline and follows the
//! history files to one target timeline: the production timeline (the one
//! the newest arrivals continue, provided the base can reach it) or a
//! timeline asked for on purpose. For each segment number PostgreSQL asks
//! first for the file of the newest timeline on the line that had begun by
//! then, and falls back to older timelines' files when it is missing
//! (XLogFileReadAnyTLI). That fallback replays the tail a timeline switch
//! abandoned, so here only the expected timeline's file counts: a parent's
//! copy of a switch segment is a gap, not a stand-in. Timelines beside the
//! line that branched off after the base backup began are reported as
//! branches (PostgreSQL's default `recovery_target_timeline = 'latest'` may
//! follow one of them). Segments before the base backup's start are not
//! needed. Pure: works on what the scan found, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::archive::folder::{BaseBackup, SegmentFile, WalArchive};
use crate::archive::wal::{HistoryEntry, Lsn, RawSegmentName, SegmentId, SegmentNo, Timeline};

/// A stretch of WAL on one timeline of the restore's line: from `begin` up to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TimelineSpan {
    pub timeline: Timeline,
    #[serde(serialize_with = "crate::serde_util::lsn")]
    pub begin: Lsn,
    #[serde(serialize_with = "crate::serde_util::opt_lsn")]
    pub end: Option<Lsn>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineSummary {
    pub timeline: Timeline,
    pub first: String,
    pub last: String,
    pub segments: u64,
    pub partial: u64,
    pub bytes: u64,
    /// Whether a restore would use this timeline.
    pub on_restore_line: bool,
}

/// Missing segments `first..=last`, named as a restore would ask for them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    pub first: String,
    pub last: String,
    pub count: u64,
    /// Missing before the base backup is consistent: nothing can be restored.
    pub before_consistency: bool,
    /// Files of an older timeline with these numbers that PostgreSQL would
    /// read instead (and so replay a branch the switch abandoned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stand_ins: Vec<String>,
}

/// A timeline beside the restore line that branched off it after the base
/// backup began: a test restore or a split brain left with archiving on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Branch {
    pub timeline: Timeline,
    /// The line's timeline it left, and where (from its `.history` file).
    pub parent: Option<Timeline>,
    #[serde(serialize_with = "crate::serde_util::opt_lsn")]
    pub switch_point: Option<Lsn>,
    pub segments: u64,
    pub last: Option<String>,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub last_arrival: Option<SystemTime>,
    /// No `.history` file names its parent: PostgreSQL cannot follow it either.
    pub history_missing: bool,
}

/// Why the production timeline (where the newest WAL arrives) is not the
/// restore line's target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum OffLine {
    /// Its `.history` file is neither in the archive nor in pg_wal.tar.gz.
    HistoryMissing { timeline: Timeline },
    /// It left the base backup's timeline before the backup began.
    ForkedBeforeBase {
        timeline: Timeline,
        parent: Timeline,
        #[serde(serialize_with = "crate::serde_util::lsn")]
        switch_point: Lsn,
    },
    /// Its history does not pass through the base backup's timeline.
    NotDescendant { timeline: Timeline },
}

impl OffLine {
    pub fn timeline(&self) -> Timeline {
        match self {
            OffLine::HistoryMissing { timeline }
            | OffLine::ForkedBeforeBase { timeline, .. }
            | OffLine::NotDescendant { timeline } => *timeline,
        }
    }
}

/// How the restore line's target timeline was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineChoice {
    /// The timeline the newest arrivals continue (or the newest the base can reach).
    #[default]
    Production,
    /// Asked for on purpose (`restore --timeline N`).
    Requested,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Continuity {
    pub segment_size: u32,
    /// The base backup's `START TIMELINE`: where the restore line starts.
    pub base_timeline: Option<Timeline>,
    /// The timeline a restore follows to its end (`recovery_target_timeline`).
    pub target_timeline: Option<Timeline>,
    pub line_choice: LineChoice,
    /// The timeline whose arrivals are newest, when the base cannot reach it.
    pub production_off_line: Option<OffLine>,
    /// A requested timeline the base cannot reach: a restore along it fails at once.
    pub requested_off_line: Option<OffLine>,
    /// What PostgreSQL 12+ would pick with its default `recovery_target_timeline
    /// = 'latest'`: the highest timeline whose history files follow one another
    /// from the base's timeline.
    pub pg_latest: Option<Timeline>,
    pub restore_line: Vec<TimelineSpan>,
    pub timelines: Vec<TimelineSummary>,
    pub branches: Vec<Branch>,
    /// The first segment a restore needs: the base backup's start.
    pub needed_from: Option<String>,
    /// The segment holding the base backup's stop point (from its `.backup` file).
    pub consistent_at: Option<String>,
    /// Newest segment on the restore's line.
    pub newest: Option<String>,
    pub gaps: Vec<Gap>,
    /// Timelines whose `.history` file is missing or unreadable: a restore cannot follow them.
    pub missing_histories: Vec<Timeline>,
    /// Segment names that make no sense for the segment size.
    pub misnamed: Vec<String>,
    /// Segments present as zero-byte files (a failed write), counted as missing.
    pub empty: Vec<String>,
    /// The first segment on the line already judged corrupt, foreign or
    /// misnamed: replay stops there, so the window ends before it.
    pub stopped_at_bad: Option<String>,
    /// The last segment of the contiguous run a restore can replay.
    pub restorable_through: Option<String>,
    /// Arrival time of that segment: the newest moment a restore brings back.
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_to: Option<SystemTime>,
    /// Whether that run reaches the newest segment on the line: a restore
    /// "to the end" replays everything (no recovery target).
    pub reaches_newest: bool,
    /// The oldest moment a restore can stop at: the base backup's end.
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_from: Option<SystemTime>,
}

impl Continuity {
    /// The timeline a restore names in `recovery_target_timeline`, as
    /// PostgreSQL accepts it: `current` for the base's own timeline (it then
    /// needs no history file), else the number.
    pub fn recovery_target_timeline(&self) -> Option<String> {
        let target = self.target_timeline?;
        Some(if Some(target) == self.base_timeline {
            "current".to_owned()
        } else {
            target.0.to_string()
        })
    }
}

impl Continuity {
    /// The file name a restore along this line asks for first for `segno`.
    pub fn expected_name(&self, segno: SegmentNo) -> String {
        expected_id(&self.restore_line, segno, self.segment_size).file_name(self.segment_size)
    }

    /// The first segment of the line, from the base backup's start to the
    /// newest, that arrived at or after `at`. A segment is archived once
    /// its last record is written, so every record in the ones before it is
    /// older than `at`: a recovery target time stops the replay in this
    /// segment or a later one (later when it arrived late, its records all
    /// older than the target). An estimate (an archive copied in one go has
    /// one arrival time for all), for progress, never for a verdict.
    pub fn first_arrived_at_or_after(&self, wal: &WalArchive, at: SystemTime) -> Option<String> {
        let segno = |name: &Option<String>| {
            RawSegmentName::parse(name.as_deref()?)?
                .resolve(self.segment_size)
                .ok()
                .map(|id| id.segment.0)
        };
        let (first, newest) = (segno(&self.needed_from)?, segno(&self.newest)?);
        (first..=newest)
            .map(|n| self.expected_name(SegmentNo(n)))
            .find(|name| {
                RawSegmentName::parse(name)
                    .and_then(|raw| wal.segment(raw))
                    .is_some_and(|file| file.mtime >= at)
            })
    }
}

/// What the analysis is asked beyond the scan's facts.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineRequest<'a> {
    /// Follow this timeline instead of the production one.
    pub timeline: Option<Timeline>,
    /// Segments already judged unusable (corrupt, foreign, misnamed): the window stops before them.
    pub unusable: Option<&'a BTreeSet<RawSegmentName>>,
}

/// The production line, with no segment judged yet.
pub fn analyse(base: &BaseBackup, wal: &WalArchive) -> Continuity {
    analyse_with(base, wal, LineRequest::default())
}

pub fn analyse_with(base: &BaseBackup, wal: &WalArchive, request: LineRequest) -> Continuity {
    let seg_size = wal
        .segment_size
        .or_else(|| base.pg_wal_first.as_ref().map(|(_, h)| h.seg_size))
        .unwrap_or(crate::archive::wal::DEFAULT_SEG_SIZE);
    let mut result = Continuity {
        segment_size: seg_size,
        ..Continuity::default()
    };
    // Nothing of the WAL is known (wal/ could not be read): no line, no
    // window, and no gap claimed for segments never seen.
    if wal.unreadable {
        return result;
    }

    // Resolve names to numbers; `resolved` keeps the archive's (timeline, number) order.
    let mut resolved: Vec<(SegmentId, &SegmentFile)> = Vec::with_capacity(wal.segments.len());
    let mut empty_ids = Vec::new();
    for file in &wal.segments {
        match file.name.resolve(seg_size) {
            // An empty file cannot be replayed: it counts as missing.
            Ok(id) if file.size == 0 && !file.partial => {
                result.empty.push(file.file_name());
                empty_ids.push(id);
            }
            Ok(id) if !file.partial => resolved.push((id, file)),
            Ok(_) => {}
            Err(_) => result.misnamed.push(file.file_name()),
        }
    }
    result.timelines = summarise_timelines(wal, seg_size);

    // Histories from the archive, else from pg_wal.tar.gz (PostgreSQL falls
    // back to pg_wal's copy when restore_command finds none).
    let mut histories: BTreeMap<Timeline, &[HistoryEntry]> = base
        .pg_wal_histories
        .iter()
        .map(|(timeline, entries)| (*timeline, entries.as_slice()))
        .collect();
    for history in &wal.histories {
        if let Ok(entries) = &history.entries {
            histories.insert(history.timeline, entries.as_slice());
        }
    }
    let label = base.label();
    let base_timeline = label.map(|l| Timeline(l.start_timeline));
    // PostgreSQL checks that the target's history holds the backup's checkpoint.
    let base_point = label.map(|l| l.checkpoint_lsn.unwrap_or(l.start_lsn));
    result.base_timeline = base_timeline;
    let base_start = label.and_then(|l| {
        let raw = RawSegmentName::parse(&l.start_segment)?;
        raw.resolve(seg_size).ok()
    });

    // When each timeline last received something: its newest segment, or its history file.
    let mut arrivals: BTreeMap<Timeline, (SystemTime, SegmentNo)> = BTreeMap::new();
    for (id, file) in &resolved {
        let entry = arrivals
            .entry(id.timeline)
            .or_insert((file.mtime, id.segment));
        *entry = (entry.0.max(file.mtime), entry.1.max(id.segment));
    }
    for history in &wal.histories {
        let entry = arrivals
            .entry(history.timeline)
            .or_insert((history.fact.mtime, SegmentNo(0)));
        entry.0 = entry.0.max(history.fact.mtime);
    }
    let reach = |timeline: Timeline| -> Result<(), OffLine> {
        let (Some(base_timeline), Some(base_point)) = (base_timeline, base_point) else {
            return Ok(());
        };
        if timeline == base_timeline {
            return Ok(());
        }
        let Some(entries) = histories.get(&timeline) else {
            return Err(if timeline.0 > 1 {
                OffLine::HistoryMissing { timeline }
            } else {
                OffLine::NotDescendant { timeline }
            });
        };
        match entries.iter().find(|e| e.parent == base_timeline) {
            None => Err(OffLine::NotDescendant { timeline }),
            Some(entry) if entry.switch_point <= base_point => Err(OffLine::ForkedBeforeBase {
                timeline,
                parent: base_timeline,
                switch_point: entry.switch_point,
            }),
            Some(_) => Ok(()),
        }
    };
    let newest_of = |candidates: &mut dyn Iterator<Item = Timeline>| {
        candidates.max_by_key(|t| {
            let (at, segno) = arrivals
                .get(t)
                .copied()
                .unwrap_or((SystemTime::UNIX_EPOCH, SegmentNo(0)));
            (at, segno, *t)
        })
    };
    let mut known: BTreeSet<Timeline> = arrivals.keys().copied().collect();
    known.extend(histories.keys().copied());
    known.extend(base_timeline);
    let target = match request.timeline {
        Some(requested) => {
            result.line_choice = LineChoice::Requested;
            if let Err(off) = reach(requested) {
                result.requested_off_line = Some(off);
            }
            Some(requested)
        }
        None => {
            let production = newest_of(&mut arrivals.keys().copied());
            match production.map(|p| (p, reach(p))) {
                Some((production, Ok(()))) => Some(production),
                Some((_, Err(off))) => {
                    if let OffLine::HistoryMissing { timeline } = off {
                        result.missing_histories.push(timeline);
                    }
                    result.production_off_line = Some(off);
                    newest_of(&mut known.iter().copied().filter(|t| reach(*t).is_ok()))
                }
                None => newest_of(&mut known.iter().copied()),
            }
        }
    };
    let Some(target) = target else {
        return result;
    };
    result.target_timeline = Some(target);
    result.restore_line = restore_line(target, histories.get(&target).copied());
    for timeline in wal
        .histories
        .iter()
        .filter(|h| h.entries.is_err())
        .map(|h| h.timeline)
    {
        if !result.missing_histories.contains(&timeline) {
            result.missing_histories.push(timeline);
        }
    }
    let on_line: BTreeSet<Timeline> = result.restore_line.iter().map(|s| s.timeline).collect();
    for summary in &mut result.timelines {
        summary.on_restore_line = on_line.contains(&summary.timeline);
    }
    if let Some(base_timeline) = base_timeline {
        let mut latest = base_timeline;
        while histories.contains_key(&Timeline(latest.0 + 1)) {
            latest = Timeline(latest.0 + 1);
        }
        result.pg_latest = Some(latest);
    }
    let line = result.restore_line.clone();
    let expected_timeline = |segno: SegmentNo| expected_id(&line, segno, seg_size).timeline;

    // Every segment number the line is served from, with the file a restore would take.
    let mut usable: BTreeMap<SegmentNo, (SegmentId, &SegmentFile)> = BTreeMap::new();
    // Older timelines' files PostgreSQL would fall back to, by number.
    let mut stand_ins: BTreeMap<SegmentNo, Vec<String>> = BTreeMap::new();
    for (id, file) in &resolved {
        let expected = expected_timeline(id.segment);
        if id.timeline == expected {
            usable.insert(id.segment, (*id, *file));
        } else if id.timeline < expected && on_line.contains(&id.timeline) {
            stand_ins
                .entry(id.segment)
                .or_default()
                .push(file.file_name());
        }
    }
    result.branches = branches(
        &known,
        &on_line,
        &histories,
        base_point,
        base_start.map(|s| s.segment),
        &resolved,
        &arrivals,
        seg_size,
    );

    let consistent = label.and_then(|label| {
        let history = wal
            .backup_files
            .iter()
            .filter_map(|f| f.label.as_ref().ok())
            .find(|h| h.start_lsn == label.start_lsn && h.start_segment == label.start_segment)?;
        result.restorable_from = history.stop_time;
        let raw = RawSegmentName::parse(history.stop_segment.as_deref()?)?;
        raw.resolve(seg_size).ok()
    });
    if result.restorable_from.is_none() {
        result.restorable_from = label.and_then(|l| l.start_time);
    }
    let start = base_start
        .map(|s| s.segment)
        .or_else(|| usable.keys().next().copied());
    let Some(start) = start else {
        return result;
    };
    let name_of = |segno: SegmentNo| expected_id(&line, segno, seg_size).file_name(seg_size);
    result.needed_from = Some(name_of(start));
    result.consistent_at = consistent.map(|c| c.file_name(seg_size));
    let consistent_segno = consistent.map_or(start, |c| c.segment);
    result.newest = usable
        .range(start..)
        .next_back()
        .map(|(_, (id, _))| id.file_name(seg_size));

    // Gaps: walk the usable numbers from the start; never iterate over missing numbers one by one.
    let mut expected = start;
    let mut run_end: Option<SegmentNo> = None;
    let mut run_broken = false;
    let push_gap = |from: SegmentNo, to: SegmentNo, result: &mut Continuity| {
        result.gaps.push(Gap {
            first: name_of(from),
            last: name_of(to),
            count: to.0 - from.0 + 1,
            before_consistency: from <= consistent_segno,
            stand_ins: stand_ins
                .range(from..=to)
                .flat_map(|(_, names)| names.iter().cloned())
                .collect(),
        });
    };
    for (&segno, (_, file)) in usable.range(start..) {
        if segno > expected {
            push_gap(expected, SegmentNo(segno.0 - 1), &mut result);
            run_broken = true;
        }
        if !run_broken {
            if request.unusable.is_some_and(|bad| bad.contains(&file.name)) {
                result.stopped_at_bad = Some(file.file_name());
                run_broken = true;
            } else {
                run_end = Some(segno);
            }
        }
        expected = segno.next();
    }
    // The archive must reach at least the consistency point, and past any empty file it holds.
    let newest_empty = empty_ids
        .iter()
        .filter(|id| id.timeline == expected_timeline(id.segment))
        .map(|id| id.segment)
        .max();
    let range_end = newest_empty.map_or(consistent_segno, |e| e.max(consistent_segno));
    if expected <= range_end {
        push_gap(expected, range_end, &mut result);
    }
    // Without a base backup there is nothing to replay the WAL onto, and a
    // line the base cannot reach is no line at all.
    if let Some(end) = run_end.filter(|end| *end >= consistent_segno && label.is_some())
        && result.requested_off_line.is_none()
        && let Some((id, file)) = usable.get(&end)
    {
        result.restorable_through = Some(id.file_name(seg_size));
        result.restorable_to = Some(file.mtime);
        result.reaches_newest = usable.range(start..).next_back().map(|(n, _)| *n) == Some(end);
    }
    result
}

/// The timelines a restore to `target` passes through, oldest first.
fn restore_line(target: Timeline, history: Option<&[HistoryEntry]>) -> Vec<TimelineSpan> {
    let mut line = Vec::new();
    let mut begin = Lsn(0);
    for entry in history.unwrap_or_default() {
        line.push(TimelineSpan {
            timeline: entry.parent,
            begin,
            end: Some(entry.switch_point),
        });
        begin = entry.switch_point;
    }
    line.push(TimelineSpan {
        timeline: target,
        begin,
        end: None,
    });
    line
}

/// The file a restore asks for first for this segment number: the newest
/// timeline on the line that had begun by then. A switch inside a segment
/// makes the child's file the one to read (it holds the parent's WAL up to
/// the switch point, then the child's).
fn expected_id(line: &[TimelineSpan], segno: SegmentNo, seg_size: u32) -> SegmentId {
    let timeline = line
        .iter()
        .rev()
        .find(|span| span.begin.segment(seg_size) <= segno)
        .or(line.first())
        .map_or(Timeline(1), |s| s.timeline);
    SegmentId {
        timeline,
        segment: segno,
    }
}

/// Timelines beside the line that left it after the base backup began (or
/// whose history is unknown while they hold segments past the base's start).
#[allow(clippy::too_many_arguments)]
fn branches(
    known: &BTreeSet<Timeline>,
    on_line: &BTreeSet<Timeline>,
    histories: &BTreeMap<Timeline, &[HistoryEntry]>,
    base_point: Option<Lsn>,
    base_start: Option<SegmentNo>,
    resolved: &[(SegmentId, &SegmentFile)],
    arrivals: &BTreeMap<Timeline, (SystemTime, SegmentNo)>,
    seg_size: u32,
) -> Vec<Branch> {
    let mut found = Vec::new();
    for timeline in known.iter().filter(|t| !on_line.contains(t)) {
        let own: Vec<&(SegmentId, &SegmentFile)> = resolved
            .iter()
            .filter(|(id, _)| id.timeline == *timeline)
            .collect();
        let fork = histories.get(timeline).map(|entries| {
            entries
                .iter()
                .rev()
                .find(|e| on_line.contains(&e.parent))
                .map(|e| (e.parent, e.switch_point))
        });
        let relevant = match fork {
            Some(Some((_, switch_point))) => base_point.is_none_or(|p| switch_point > p),
            // A history that never touches the line: another cluster's or a corrupt one.
            Some(None) => true,
            None => {
                timeline.0 > 1
                    && own
                        .iter()
                        .any(|(id, _)| base_start.is_none_or(|s| id.segment >= s))
            }
        };
        if !relevant {
            continue;
        }
        let last = own.last().map(|(id, _)| id.file_name(seg_size));
        found.push(Branch {
            timeline: *timeline,
            parent: fork.flatten().map(|(p, _)| p),
            switch_point: fork.flatten().map(|(_, s)| s),
            segments: own.len() as u64,
            last,
            last_arrival: arrivals.get(timeline).map(|(at, _)| *at),
            history_missing: fork.is_none(),
        });
    }
    found
}

fn summarise_timelines(wal: &WalArchive, seg_size: u32) -> Vec<TimelineSummary> {
    // First and last names are kept parsed and formatted once per timeline,
    // not once per segment (a million `to_string`s on a large root).
    let mut by_timeline: BTreeMap<u32, (TimelineSummary, RawSegmentName, RawSegmentName)> =
        BTreeMap::new();
    for file in &wal.segments {
        if file.name.resolve(seg_size).is_err() {
            continue;
        }
        let (summary, _, last) = by_timeline.entry(file.name.timeline).or_insert_with(|| {
            let summary = TimelineSummary {
                timeline: Timeline(file.name.timeline),
                first: String::new(),
                last: String::new(),
                segments: 0,
                partial: 0,
                bytes: 0,
                on_restore_line: false,
            };
            (summary, file.name, file.name)
        });
        if file.partial {
            summary.partial += 1;
        } else {
            summary.segments += 1;
        }
        summary.bytes += file.size;
        *last = file.name;
    }
    by_timeline
        .into_values()
        .map(|(summary, first, last)| TimelineSummary {
            first: first.to_string(),
            last: last.to_string(),
            ..summary
        })
        .collect()
}
