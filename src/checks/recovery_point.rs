//! The recovery point a restore "to the end" brings back: the last commit
//! or abort on the restore line, read from the newest segments of the
//! contiguous run (`archive::records` walks their records). A file's mtime
//! says when it arrived, always later than the last commit inside it; a
//! recovery target past that commit makes PostgreSQL 13+ refuse with
//! `recovery ended before configured recovery target was reached`.

use std::io::Read;
use std::path::Path;

use crate::archive::catalog::Client;
use crate::archive::continuity::{self, Continuity, LineRequest};
use crate::archive::folder::WalArchive;
use crate::archive::records::{TransactionEnd, scan_segment};
use crate::archive::safe_open::SegmentReader;
use crate::archive::wal::{RawSegmentName, SegmentNo};

/// How many segments back from the run's end are read to find a
/// transaction's end: an idle server switches segments on archive_timeout
/// with no commit in them, but not for hours on end.
const LOOK_BACK: u64 = 8;

/// The last transaction end on the line, in the segment where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// The end of the window it was read back from (`restorable_through`).
    pub through: String,
    pub segment: String,
    pub transaction: TransactionEnd,
}

/// The line a restore follows, judged with the segments already found
/// unusable, and the last commit it brings back: what `check` reports and
/// what the restore's preflight holds a restore to.
pub fn judge_line(
    client: &Client,
    request: LineRequest<'_>,
) -> (Continuity, Option<RecoveryPoint>) {
    let line = continuity::analyse_with(&client.base, &client.wal, request);
    let point = last_transaction(&client.wal_dir(), &client.wal, &line);
    (line, point)
}

/// The recovery point of the production line with `unusable` segments cutting it.
pub fn point_for(
    client: &Client,
    unusable: &std::collections::BTreeSet<crate::archive::wal::RawSegmentName>,
) -> Option<RecoveryPoint> {
    judge_line(
        client,
        LineRequest {
            timeline: None,
            unusable: Some(unusable),
        },
    )
    .1
}

/// Reads back from `continuity.restorable_through` (at most [`LOOK_BACK`]
/// segments) for the last commit or abort; `None` when none was found or the
/// window is empty. Each read is bounded by the segment size.
pub fn last_transaction(
    wal_dir: &Path,
    wal: &WalArchive,
    continuity: &Continuity,
) -> Option<RecoveryPoint> {
    let seg_size = continuity.segment_size;
    let through = RawSegmentName::parse(continuity.restorable_through.as_deref()?)?
        .resolve(seg_size)
        .ok()?;
    let first = continuity
        .needed_from
        .as_deref()
        .and_then(RawSegmentName::parse)
        .and_then(|raw| raw.resolve(seg_size).ok())
        .map_or(0, |id| id.segment.0);
    let mut segno = through.segment.0;
    for _ in 0..LOOK_BACK {
        let name = continuity.expected_name(SegmentNo(segno));
        if let Some(file) = find(wal, &name) {
            let bytes = read_segment(&wal_dir.join(&file), seg_size)?;
            if let Ok(records) = scan_segment(&bytes)
                && let Some(transaction) = records.last_transaction
            {
                return Some(RecoveryPoint {
                    through: continuity.restorable_through.clone()?,
                    segment: name,
                    transaction,
                });
            }
        }
        if segno <= first {
            break;
        }
        segno -= 1;
    }
    None
}

fn find(wal: &WalArchive, name: &str) -> Option<String> {
    let raw = RawSegmentName::parse(name)?;
    let at = wal
        .segments
        .partition_point(|s| (s.name, s.partial) < (raw, false));
    wal.segments
        .get(at)
        .filter(|s| s.name == raw && !s.partial)
        .map(|s| s.file_name())
}

/// A segment's bytes: a regular file only, never more than one segment.
fn read_segment(path: &Path, seg_size: u32) -> Option<Vec<u8>> {
    let mut reader = SegmentReader::open(path, Some(seg_size)).ok()?;
    let mut bytes = Vec::with_capacity(seg_size as usize);
    reader.read_to_end(&mut bytes).ok()?;
    bytes.truncate(seg_size as usize);
    Some(bytes)
}
