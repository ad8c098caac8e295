//! One client folder as the scan and the file events saw it: the files of
//! `base/` and `wal/` with their stats, and what the few files whose content
//! matters say (backup labels, timeline histories, the first WAL header).
//! The catalog's clients are built from these; continuity reads them.
//! Pure: everything here works on facts already read, nothing touches the
//! disk, so the live view can apply changes without I/O.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::archive::base_backup::{BackupLabel, BaseTarFull, BaseTarHead};
use crate::archive::safe_open::{self, FileKind};
use crate::archive::wal::{
    self, HistoryEntry, LongPageHeader, RawSegmentName, Timeline, WalFileKind,
};

/// `CLIENT/wal`: where a client's archive_command delivers segments.
pub fn wal_dir(client_dir: &Path) -> PathBuf {
    client_dir.join("wal")
}

/// `CLIENT/base`: where a client's base backup tarballs are copied.
pub fn base_dir(client_dir: &Path) -> PathBuf {
    client_dir.join("base")
}

/// A file's name, size and modification time, as one stat gave them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileFact {
    pub name: String,
    pub size: u64,
    #[serde(serialize_with = "crate::serde_util::time")]
    pub mtime: SystemTime,
}

/// Something the scan could not read or would not follow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
    pub kind: UnreadableKind,
}

/// Why something was not read: each has its own problem code and fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableKind {
    /// Reading was refused (EACCES, EPERM): its state is unknown.
    PermissionDenied,
    /// A symlink: links are never followed.
    Link,
    /// A fifo, a socket or a device: never opened.
    NotRegular(FileKind),
    /// Gone between its listing and its stat (removed or renamed meanwhile).
    Gone,
    /// Any other error of the system.
    Other,
}

impl Unreadable {
    /// An error of a file call on `path`, sorted by what it means.
    pub fn from_io(path: &Path, error: &std::io::Error) -> Unreadable {
        let kind = if let Some(refused) = safe_open::not_regular(error) {
            match refused.kind {
                FileKind::Symlink => UnreadableKind::Link,
                kind => UnreadableKind::NotRegular(kind),
            }
        } else if safe_open::is_permission_denied(error) {
            UnreadableKind::PermissionDenied
        } else if error.kind() == std::io::ErrorKind::NotFound {
            UnreadableKind::Gone
        } else {
            UnreadableKind::Other
        };
        Unreadable {
            path: path.to_owned(),
            error: error.to_string(),
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseFileKind {
    BaseTar,
    PgWalTar,
    Manifest,
    /// `<oid>.tar[.gz]`: a tablespace's contents.
    Tablespace,
    /// A tarball still being copied (`.part`).
    InFlight,
    Other,
}

impl BaseFileKind {
    pub fn classify(name: &str) -> BaseFileKind {
        if name.ends_with(".part") {
            return BaseFileKind::InFlight;
        }
        let stem = name.strip_suffix(".gz").unwrap_or(name);
        match stem {
            "base.tar" => BaseFileKind::BaseTar,
            "pg_wal.tar" => BaseFileKind::PgWalTar,
            "backup_manifest" => BaseFileKind::Manifest,
            _ => match stem.strip_suffix(".tar") {
                Some(oid) if !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()) => {
                    BaseFileKind::Tablespace
                }
                _ => BaseFileKind::Other,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseFile {
    pub kind: BaseFileKind,
    #[serde(flatten)]
    pub fact: FileFact,
}

/// The `base/` folder and what its tarballs say.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BaseBackup {
    /// Whether `base/` exists at all.
    pub present: bool,
    /// True when it (or the client folder) exists but could not be listed:
    /// nothing below is known, and nothing is claimed missing.
    pub unreadable: bool,
    pub files: Vec<BaseFile>,
    /// backup_label and PG_VERSION from the head of base.tar.gz.
    pub head: Option<BaseTarHead>,
    pub head_error: Option<String>,
    /// The first segment inside pg_wal.tar.gz and its header.
    pub pg_wal_first: Option<(String, LongPageHeader)>,
    pub pg_wal_error: Option<String>,
    /// Timeline history files inside pg_wal.tar.gz (read only for a base on a timeline above 1).
    #[serde(skip)]
    pub pg_wal_histories: Vec<(Timeline, Vec<HistoryEntry>)>,
    /// Facts from a full pass over base.tar.gz, when computed or cached.
    pub full: Option<BaseTarFull>,
}

impl BaseBackup {
    pub fn file(&self, kind: BaseFileKind) -> Option<&BaseFile> {
        self.files.iter().find(|f| f.kind == kind)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.fact.size).sum()
    }

    pub fn pg_version(&self) -> Option<&str> {
        self.head.as_ref()?.pg_version.as_deref()
    }

    pub fn label(&self) -> Option<&BackupLabel> {
        self.head.as_ref().map(|h| &h.label)
    }

    /// The cluster's system identifier: from pg_control when a full pass has
    /// read it, else from the WAL header in pg_wal.tar.gz (the same number).
    pub fn system_identifier(&self) -> Option<u64> {
        self.full
            .map(|f| f.system_identifier)
            .or_else(|| self.pg_wal_first.as_ref().map(|(_, h)| h.system_identifier))
    }

    /// When the backup was taken: the label's START TIME, else the tarball's mtime.
    pub fn taken_at(&self) -> Option<SystemTime> {
        self.label()
            .and_then(|l| l.start_time)
            .or_else(|| self.file(BaseFileKind::BaseTar).map(|f| f.fact.mtime))
    }
}

/// One archived segment (or `.partial`); its name is kept parsed, not as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFile {
    pub name: RawSegmentName,
    pub compressed: bool,
    pub partial: bool,
    pub size: u64,
    pub mtime: SystemTime,
}

impl SegmentFile {
    pub fn file_name(&self) -> String {
        let partial = if self.partial { ".partial" } else { "" };
        let gz = if self.compressed { ".gz" } else { "" };
        format!("{}{partial}{gz}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupHistoryFile {
    #[serde(flatten)]
    pub fact: FileFact,
    pub label: Result<BackupLabel, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineHistoryFile {
    pub timeline: Timeline,
    #[serde(flatten)]
    pub fact: FileFact,
    #[serde(skip)]
    pub entries: Result<Vec<HistoryEntry>, String>,
}

/// The `wal/` folder.
#[derive(Debug, Clone, Default)]
pub struct WalArchive {
    pub present: bool,
    /// False when the folder exists but could not be listed: nothing below is known.
    pub unreadable: bool,
    /// Sorted by name, which is (timeline, segment number) order.
    pub segments: Vec<SegmentFile>,
    pub backup_files: Vec<BackupHistoryFile>,
    pub histories: Vec<TimelineHistoryFile>,
    pub in_flight: Vec<FileFact>,
    pub others: Vec<FileFact>,
    /// From the first readable segment's long header; None when no segment could be read.
    pub segment_size: Option<u32>,
    pub first_header: Option<LongPageHeader>,
    pub header_error: Option<String>,
}

impl WalArchive {
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum::<u64>()
            + self.backup_files.iter().map(|f| f.fact.size).sum::<u64>()
            + self.histories.iter().map(|f| f.fact.size).sum::<u64>()
    }

    /// The whole (not `.partial`) segment file of this name, either kind.
    pub fn segment(&self, name: RawSegmentName) -> Option<&SegmentFile> {
        let at = self
            .segments
            .partition_point(|s| (s.name, s.partial) < (name, false));
        self.segments
            .get(at)
            .filter(|s| s.name == name && !s.partial)
    }

    pub fn last_arrival(&self) -> Option<SystemTime> {
        let segments = self.segments.iter().map(|s| s.mtime);
        let others = self.backup_files.iter().map(|f| f.fact.mtime);
        segments.chain(others).max()
    }

    /// Files one `wal/` entry as what its name says; segments are appended
    /// unsorted (the scan sorts once at the end). `text` is the content of a
    /// `.backup` or `.history` file, read by whoever stat'ed it.
    pub(crate) fn add_file(&mut self, fact: FileFact, text: Option<Result<String, String>>) {
        match WalFileKind::classify(&fact.name) {
            WalFileKind::Segment {
                name,
                compressed,
                partial,
            } => self.segments.push(SegmentFile {
                name,
                compressed,
                partial,
                size: fact.size,
                mtime: fact.mtime,
            }),
            WalFileKind::BackupHistory { .. } => {
                let label = text
                    .unwrap_or_else(|| Err("not read".into()))
                    .and_then(|text| BackupLabel::parse(&text));
                self.backup_files.push(BackupHistoryFile { fact, label });
            }
            WalFileKind::TimelineHistory { timeline, .. } => {
                let entries = text
                    .unwrap_or_else(|| Err("not read".into()))
                    .and_then(|text| wal::parse_timeline_history(&text).map_err(|e| e.to_string()));
                self.histories.push(TimelineHistoryFile {
                    timeline,
                    fact,
                    entries,
                });
            }
            WalFileKind::InFlight { .. } => self.in_flight.push(fact),
            WalFileKind::Other => self.others.push(fact),
        }
    }

    fn file_count(&self) -> usize {
        self.segments.len()
            + self.backup_files.len()
            + self.histories.len()
            + self.in_flight.len()
            + self.others.len()
    }

    /// Removes whatever entry has this file name; true when something was removed.
    pub(crate) fn remove_file(&mut self, name: &str) -> bool {
        let before = self.file_count();
        // Only a segment-like name can be a segment's file name. The list is
        // sorted by (name, partial): look in that run alone, instead of
        // formatting every segment's name (a storm of events made that quadratic).
        if let WalFileKind::Segment {
            name: raw, partial, ..
        } = WalFileKind::classify(name)
        {
            debug_assert!(self.segments.is_sorted_by_key(|s| (s.name, s.partial)));
            let start = self
                .segments
                .partition_point(|s| (s.name, s.partial) < (raw, partial));
            let run = self.segments[start..]
                .iter()
                .take_while(|s| s.name == raw && s.partial == partial)
                .count();
            let mut kept: Vec<SegmentFile> = self.segments[start..start + run]
                .iter()
                .filter(|s| s.file_name() != name)
                .copied()
                .collect();
            if kept.len() != run {
                self.segments.splice(start..start + run, kept.drain(..));
            }
        }
        self.backup_files.retain(|f| f.fact.name != name);
        self.histories.retain(|f| f.fact.name != name);
        self.in_flight.retain(|f| f.name != name);
        self.others.retain(|f| f.name != name);
        before != self.file_count()
    }

    /// Files a finished file seen live, keeping the segment list sorted.
    /// Returns the segment, and whether a file of that name was known before.
    pub(crate) fn insert_live(
        &mut self,
        fact: FileFact,
        text: Option<Result<String, String>>,
    ) -> Option<(SegmentFile, bool)> {
        let replaced = self.remove_file(&fact.name);
        self.in_flight
            .retain(|p| !matches!(WalFileKind::classify(&p.name), WalFileKind::InFlight { final_name } if final_name == fact.name));
        let count = self.segments.len();
        self.add_file(fact, text);
        if self.segments.len() == count {
            return None;
        }
        let segment = self.segments.pop()?;
        let position = self
            .segments
            .partition_point(|s| (s.name, s.partial) < (segment.name, segment.partial));
        self.segments.insert(position, segment);
        Some((segment, replaced))
    }

    /// Takes the segment size from a header read from one of its segments,
    /// unless one is known already; a failed read is kept as the reason.
    pub(crate) fn learn_header(&mut self, header: Result<LongPageHeader, String>) {
        if self.segment_size.is_some() {
            return;
        }
        match header {
            Ok(header) => {
                self.segment_size = Some(header.seg_size);
                self.first_header = Some(header);
                self.header_error = None;
            }
            Err(error) => self.header_error = Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_file_takes_exactly_that_segment() {
        let segment = |name: &str, compressed, partial| SegmentFile {
            name: RawSegmentName::parse(name).unwrap(),
            compressed,
            partial,
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
        };
        let a = "000000010000000000000A0B";
        let b = "000000010000000000000A0C";
        let mut wal = WalArchive {
            segments: vec![
                segment(a, false, false),
                segment(a, true, false),
                segment(a, true, true),
                segment(b, true, false),
            ],
            others: vec![FileFact {
                name: format!("{b}.gz"),
                size: 1,
                mtime: SystemTime::UNIX_EPOCH,
            }],
            ..WalArchive::default()
        };
        let names = |wal: &WalArchive| -> Vec<String> {
            wal.segments.iter().map(SegmentFile::file_name).collect()
        };
        // A name that only parses to the segment (lowercase) is not its file name.
        assert!(!wal.remove_file(&a.to_lowercase()));
        assert!(!wal.remove_file("000000010000000000000A0D"));
        assert!(wal.remove_file(&format!("{a}.gz")));
        assert_eq!(
            names(&wal),
            vec![a.to_owned(), format!("{a}.partial.gz"), format!("{b}.gz")]
        );
        assert!(wal.remove_file(&format!("{a}.partial.gz")));
        assert!(wal.remove_file(&format!("{b}.gz")));
        assert_eq!(names(&wal), vec![a.to_owned()]);
        assert!(wal.others.is_empty());
    }

    #[test]
    fn classifies_base_folder_files() {
        assert_eq!(BaseFileKind::classify("base.tar.gz"), BaseFileKind::BaseTar);
        assert_eq!(BaseFileKind::classify("base.tar"), BaseFileKind::BaseTar);
        assert_eq!(
            BaseFileKind::classify("pg_wal.tar.gz"),
            BaseFileKind::PgWalTar
        );
        assert_eq!(
            BaseFileKind::classify("backup_manifest"),
            BaseFileKind::Manifest
        );
        assert_eq!(
            BaseFileKind::classify("16385.tar.gz"),
            BaseFileKind::Tablespace
        );
        assert_eq!(
            BaseFileKind::classify("base.tar.gz.part"),
            BaseFileKind::InFlight
        );
        assert_eq!(BaseFileKind::classify("test.txt"), BaseFileKind::Other);
        assert_eq!(BaseFileKind::classify(".tar.gz"), BaseFileKind::Other);
    }
}
