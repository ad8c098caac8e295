//! The recovery point a restore "to the end" brings back: the last commit
//! or abort on the restore line, read from the newest segments of the
//! contiguous run (`archive::records` walks their records). A file's mtime
//! says when it arrived, always later than the last commit inside it; a
//! recovery target past that commit makes PostgreSQL 13+ refuse with
//! `recovery ended before configured recovery target was reached`.
//!
//! Reading a segment inflates up to 16 MiB, so the point is remembered per
//! client by the window's last file (name, size, mtime) in
//! `~/.cache/walwarden/recovery-points.json`: an unchanged window is never
//! read twice, a new arrival reads one segment.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::archive::catalog::Client;
use crate::archive::continuity::{self, Continuity, LineRequest};
use crate::archive::folder::WalArchive;
use crate::archive::records::{TransactionEnd, scan_segment};
use crate::archive::safe_open::SegmentReader;
use crate::archive::wal::Lsn;
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
    wal.segment(RawSegmentName::parse(name)?)
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

pub fn default_cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("walwarden").join("recovery-points.json"))
}

/// A point as remembered: the window's last file it was read for, and what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    through: String,
    file_size: u64,
    file_mtime_ns: u128,
    /// `None`: no commit found within the look-back.
    point: Option<StoredPoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPoint {
    segment: String,
    lsn: u64,
    unix_micros: u64,
    committed: bool,
}

/// Recovery points remembered per client folder.
#[derive(Debug, Default)]
pub struct PointCache {
    path: Option<PathBuf>,
    clients: HashMap<String, Remembered>,
    changed: bool,
    /// Windows read since the cache was loaded (for tests).
    pub reads: u64,
}

impl PointCache {
    /// Loads the cache; a missing or unreadable file is an empty cache.
    pub fn load(path: Option<&Path>) -> PointCache {
        PointCache {
            path: path.map(Path::to_owned),
            clients: crate::store::read_json_or_default(path),
            changed: false,
            reads: 0,
        }
    }

    pub fn save(&self) -> io::Result<()> {
        match (&self.path, self.changed) {
            (Some(path), true) => crate::store::write_json(path, &self.clients),
            _ => Ok(()),
        }
    }

    /// The recovery point of the production line with `unusable` segments
    /// cutting it; read from disk only when the window's last file is not
    /// the one remembered.
    pub fn point_for(
        &mut self,
        client: &Client,
        unusable: &std::collections::BTreeSet<crate::archive::wal::RawSegmentName>,
    ) -> Option<RecoveryPoint> {
        let line = continuity::analyse_with(
            &client.base,
            &client.wal,
            LineRequest {
                timeline: None,
                unusable: Some(unusable),
            },
        );
        let through = line.restorable_through.clone()?;
        let raw = crate::archive::wal::RawSegmentName::parse(&through)?;
        let at = client
            .wal
            .segments
            .partition_point(|s| (s.name, s.partial) < (raw, false));
        let file = client.wal.segments.get(at).filter(|s| s.name == raw)?;
        let mtime_ns = file
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = client.path.to_string_lossy().into_owned();
        if let Some(known) = self.clients.get(&key)
            && known.through == through
            && known.file_size == file.size
            && known.file_mtime_ns == mtime_ns
        {
            return known.point.as_ref().map(|p| RecoveryPoint {
                through: through.clone(),
                segment: p.segment.clone(),
                transaction: TransactionEnd {
                    lsn: Lsn(p.lsn),
                    time: UNIX_EPOCH + Duration::from_micros(p.unix_micros),
                    committed: p.committed,
                },
            });
        }
        self.reads += 1;
        let point = last_transaction(&client.wal_dir(), &client.wal, &line);
        self.clients.insert(
            key,
            Remembered {
                through,
                file_size: file.size,
                file_mtime_ns: mtime_ns,
                point: point.as_ref().map(|p| StoredPoint {
                    segment: p.segment.clone(),
                    lsn: p.transaction.lsn.0,
                    unix_micros: p
                        .transaction
                        .time
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros() as u64),
                    committed: p.transaction.committed,
                }),
            },
        );
        self.changed = true;
        point
    }
}
