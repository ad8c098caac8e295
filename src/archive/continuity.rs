//! Which segments a restore of a client needs, whether they are there, and
//! how far a restore would get.
//!
//! A restore follows one line of timelines: the newest timeline in the
//! archive and its ancestors, as its `.history` file lists them. For each
//! segment number PostgreSQL takes the file of the newest timeline on that
//! line that had begun by then (XLogFileReadAnyTLI); a switch to a new
//! timeline is therefore not a gap, and segments of abandoned timelines are
//! not needed. Segments before the base backup's start are not needed either.
//! Pure: works on what the scan found, no I/O.

use std::collections::BTreeMap;
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
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Continuity {
    pub segment_size: u32,
    pub target_timeline: Option<Timeline>,
    pub restore_line: Vec<TimelineSpan>,
    pub timelines: Vec<TimelineSummary>,
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
    /// The last segment of the contiguous run a restore can replay.
    pub restorable_through: Option<String>,
    /// Arrival time of that segment: the newest moment a restore brings back.
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_to: Option<SystemTime>,
    /// The oldest moment a restore can stop at: the base backup's end.
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub restorable_from: Option<SystemTime>,
}

pub fn analyse(base: &BaseBackup, wal: &WalArchive) -> Continuity {
    let seg_size = wal
        .segment_size
        .or_else(|| base.pg_wal_first.as_ref().map(|(_, h)| h.seg_size))
        .unwrap_or(crate::archive::wal::DEFAULT_SEG_SIZE);
    let mut result = Continuity {
        segment_size: seg_size,
        ..Continuity::default()
    };

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

    let histories: BTreeMap<Timeline, &Vec<HistoryEntry>> = wal
        .histories
        .iter()
        .filter_map(|h| h.entries.as_ref().ok().map(|e| (h.timeline, e)))
        .collect();
    let label = base.label();
    let base_start = label.and_then(|l| {
        let raw = RawSegmentName::parse(&l.start_segment)?;
        raw.resolve(seg_size).ok()
    });
    let target = resolved
        .iter()
        .map(|(id, _)| id.timeline)
        .chain(histories.keys().copied())
        .chain(wal.histories.iter().map(|h| h.timeline))
        .chain(base_start.map(|s| s.timeline))
        .max();
    let Some(target) = target else {
        return result;
    };
    result.target_timeline = Some(target);
    result.restore_line = restore_line(target, histories.get(&target).copied());
    if target.0 > 1 && !histories.contains_key(&target) {
        result.missing_histories.push(target);
    }
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
    for summary in &mut result.timelines {
        summary.on_restore_line = result
            .restore_line
            .iter()
            .any(|s| s.timeline == summary.timeline);
    }

    // Every segment number the line can be served from, with the file a restore would take.
    let mut usable: BTreeMap<SegmentNo, (SegmentId, &SegmentFile)> = BTreeMap::new();
    for (id, file) in &resolved {
        let Some(rank) = line_rank(&result.restore_line, *id, seg_size) else {
            continue;
        };
        let keep = match usable.get(&id.segment) {
            Some((held, _)) => {
                line_rank(&result.restore_line, *held, seg_size).is_some_and(|r| rank > r)
            }
            None => true,
        };
        if keep {
            usable.insert(id.segment, (*id, *file));
        }
    }

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
    let line = result.restore_line.clone();
    let name_of = |segno: SegmentNo| expected_id(&line, segno, seg_size).file_name(seg_size);
    result.needed_from = Some(name_of(start));
    result.consistent_at = consistent.map(|c| c.file_name(seg_size));
    let consistent_segno = consistent.map_or(start, |c| c.segment);
    result.newest = usable
        .values()
        .next_back()
        .map(|(id, _)| id.file_name(seg_size));

    // Gaps: walk the usable numbers from the start; never iterate over missing numbers one by one.
    let mut expected = start;
    let mut run_end: Option<SegmentNo> = None;
    let mut first_gap_seen = false;
    let push_gap = |from: SegmentNo, to: SegmentNo, result: &mut Continuity| {
        result.gaps.push(Gap {
            first: name_of(from),
            last: name_of(to),
            count: to.0 - from.0 + 1,
            before_consistency: from <= consistent_segno,
        });
    };
    for (&segno, _) in usable.range(start..) {
        if segno > expected {
            push_gap(expected, SegmentNo(segno.0 - 1), &mut result);
            first_gap_seen = true;
        }
        if !first_gap_seen {
            run_end = Some(segno);
        }
        expected = segno.next();
    }
    // The archive must reach at least the consistency point, and past any empty file it holds.
    let line = &result.restore_line;
    let newest_empty = empty_ids
        .iter()
        .filter(|id| line_rank(line, **id, seg_size).is_some())
        .map(|id| id.segment)
        .max();
    let range_end = newest_empty.map_or(consistent_segno, |e| e.max(consistent_segno));
    if expected <= range_end {
        push_gap(expected, range_end, &mut result);
    }
    // Without a base backup there is nothing to replay the WAL onto.
    if let Some(end) = run_end.filter(|end| *end >= consistent_segno && label.is_some())
        && let Some((id, file)) = usable.get(&end)
    {
        result.restorable_through = Some(id.file_name(seg_size));
        result.restorable_to = Some(file.mtime);
    }
    result
}

/// The timelines a restore to `target` passes through, oldest first.
fn restore_line(target: Timeline, history: Option<&Vec<HistoryEntry>>) -> Vec<TimelineSpan> {
    let mut line = Vec::new();
    let mut begin = Lsn(0);
    for entry in history.map(|h| h.as_slice()).unwrap_or_default() {
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

/// Position of the span that may serve this segment (higher = newer timeline), if any.
fn line_rank(line: &[TimelineSpan], id: SegmentId, seg_size: u32) -> Option<usize> {
    line.iter().position(|span| {
        span.timeline == id.timeline
            && span.begin.segment(seg_size) <= id.segment
            && span
                .end
                .is_none_or(|end| end.0 > 0 && id.segment <= Lsn(end.0 - 1).segment(seg_size))
    })
}

/// The file a restore would ask for first for this segment number.
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
