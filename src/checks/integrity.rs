//! Integrity primitives: a base backup's tarballs and a segment read to
//! their very end (every gzip CRC, the backup label, pg_control, the
//! backup_manifest compared while the files stream past, the segment's page
//! header) and judged against the archive's facts. The verification window,
//! the deep check and the quick check all judge with these, so a file is
//! good or bad the same way everywhere.

use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::archive::base_backup::{self, BackupLabel, PassOptions};
use crate::archive::manifest::{BackupManifest, ManifestCheck, WalRange};
use crate::archive::safe_open::{self, FileKind, SegmentReader};
use crate::archive::wal::{LONG_HEADER_LEN, LongPageHeader, RawSegmentName};

/// Bytes read so far of the bytes to read, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    pub file: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What reading both base tarballs end to end found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BaseCheck {
    pub label: Option<BackupLabel>,
    /// From global/pg_control inside base.tar.gz.
    #[serde(serialize_with = "crate::serde_util::opt_u64_text")]
    pub system_identifier: Option<u64>,
    pub bytes: u64,
    /// Empty when everything is fine.
    pub failures: Vec<String>,
    /// Set when a failure was one of access (a permission refused, a fifo or
    /// a link in place of a tarball, an error of the system): the tarballs'
    /// content is then unknown, not damaged.
    #[serde(skip)]
    pub access: Option<ReadFailure>,
    /// What the backup_manifest said, when there is one.
    pub manifest: Option<Box<ManifestOutcome>>,
    /// Segment file names inside pg_wal.tar.gz.
    pub pg_wal_segments: Vec<String>,
}

impl BaseCheck {
    pub fn manifest_mismatches(&self) -> &[String] {
        self.manifest.as_ref().map_or(&[], |m| &m.mismatches)
    }
}

/// The backup_manifest's verdict on base.tar.gz.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ManifestOutcome {
    /// `base/backup_manifest`, or `base.tar.gz` when the manifest came inside it.
    pub found_in: String,
    /// One line per difference, each naming the file; the manifest's own
    /// checksum failure is one too.
    pub mismatches: Vec<String>,
    /// The WAL the backup needs, from the manifest.
    pub wal_ranges: Vec<WalRange>,
    /// Whether every file was compared: false when base.tar.gz could not be
    /// read to its end (then `base_corrupt` says why, and the manifest has
    /// not been proven either way).
    pub complete: bool,
    /// `System-Identifier` (manifest version 2, PostgreSQL 17+).
    #[serde(serialize_with = "crate::serde_util::opt_u64_text")]
    pub system_identifier: Option<u64>,
}

/// Why a file could not be read to its end: its bytes are wrong (damage),
/// or it could not be read at all, which says nothing about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// A broken stream, a wrong length, a file too large to be what it is named.
    Damaged(String),
    /// Not a regular file (a fifo, a device, a link): never opened.
    NotRegular(FileKind),
    /// The permission to read it was refused.
    Denied(String),
    /// Any other error of the system (the disk, the file system).
    Io(String),
}

impl ReadFailure {
    /// Sorts an error of a read: the system's own errors are not damage.
    pub fn of(error: &io::Error) -> ReadFailure {
        if let Some(refused) = safe_open::not_regular(error) {
            return ReadFailure::NotRegular(refused.kind);
        }
        if safe_open::is_permission_denied(error) {
            return ReadFailure::Denied(error.to_string());
        }
        if error.raw_os_error().is_some() {
            return ReadFailure::Io(error.to_string());
        }
        ReadFailure::Damaged(error.to_string())
    }
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Damaged(reason)
            | ReadFailure::Denied(reason)
            | ReadFailure::Io(reason) => f.write_str(reason),
            ReadFailure::NotRegular(kind) => {
                write!(f, "a {}, not a regular file: never opened", kind.as_str())
            }
        }
    }
}

impl Serialize for ReadFailure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What reading one new segment end to end found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentCheck {
    pub name: String,
    pub size: u64,
    /// `None` when the file is readable and (if compressed) a valid gzip stream to its end.
    pub stream_error: Option<ReadFailure>,
    #[serde(skip)]
    pub header: Result<LongPageHeader, String>,
}

/// What reading a segment says about it, against the archive's facts; the
/// verification window and `check --deep` judge with this one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SegmentVerdict {
    Good,
    Corrupt {
        reason: String,
    },
    Foreign {
        system_identifier: u64,
        expected: u64,
    },
    Misnamed {
        header_says: String,
    },
    /// Not a regular file (a fifo, a device, a link): never opened.
    NotRegular {
        kind: FileKind,
    },
    /// It could not be read (`denied`: for want of permission): nothing is
    /// known of its content, which is not damage. Never remembered.
    Unreadable {
        reason: String,
        denied: bool,
    },
}

impl SegmentVerdict {
    /// A verdict on what the reader could do rather than on the file's
    /// bytes: true for these, which are judged again at every check.
    pub fn is_about_access(&self) -> bool {
        matches!(
            self,
            SegmentVerdict::NotRegular { .. } | SegmentVerdict::Unreadable { .. }
        )
    }
}

impl SegmentCheck {
    /// Judges what was read: a stream that does not read to its end, a bad
    /// header or another segment size is corrupt; another system identifier is
    /// foreign (the root cause, so it comes before the name); a header naming
    /// another segment is misnamed. `None` skips that comparison.
    pub fn verdict(&self, expected_sysid: Option<u64>, seg_size: Option<u32>) -> SegmentVerdict {
        match &self.stream_error {
            Some(ReadFailure::Damaged(error)) => {
                return SegmentVerdict::Corrupt {
                    reason: format!("not a valid stream: {error}"),
                };
            }
            Some(ReadFailure::NotRegular(kind)) => {
                return SegmentVerdict::NotRegular { kind: *kind };
            }
            Some(ReadFailure::Denied(reason)) => {
                return SegmentVerdict::Unreadable {
                    reason: reason.clone(),
                    denied: true,
                };
            }
            Some(ReadFailure::Io(reason)) => {
                return SegmentVerdict::Unreadable {
                    reason: reason.clone(),
                    denied: false,
                };
            }
            None => {}
        }
        let header = match &self.header {
            Ok(header) => header,
            Err(reason) => {
                return SegmentVerdict::Corrupt {
                    reason: reason.clone(),
                };
            }
        };
        if let Some(expected) = seg_size.filter(|s| *s != header.seg_size) {
            return SegmentVerdict::Corrupt {
                reason: format!(
                    "segment size {} in its header, the archive's is {expected}",
                    header.seg_size
                ),
            };
        }
        if let Some(expected) = expected_sysid.filter(|e| *e != header.system_identifier) {
            return SegmentVerdict::Foreign {
                system_identifier: header.system_identifier,
                expected,
            };
        }
        let stem = self.name.get(..24).unwrap_or(&self.name);
        let named = RawSegmentName::parse(stem).and_then(|raw| raw.resolve(header.seg_size).ok());
        // A timeline's first segment after a switch inside a segment is a copy
        // of the parent's up to the switch point, so its first page carries
        // an ancestor's timeline: only the page address must match, and the
        // header's timeline may not be newer than the name's.
        let header_id = header.segment_id();
        let matches = named
            .is_some_and(|id| id.segment == header_id.segment && header_id.timeline <= id.timeline);
        if !matches {
            return SegmentVerdict::Misnamed {
                header_says: header.segment_id().file_name(header.seg_size),
            };
        }
        SegmentVerdict::Good
    }
}

/// Reads base.tar(.gz) and pg_wal.tar(.gz) to their very end: every gzip
/// CRC checked, the backup label and pg_control read on the way.
pub fn check_base_backup(base_dir: &Path, progress: &mut dyn FnMut(Progress)) -> BaseCheck {
    let mut check = BaseCheck::default();
    for (label, names) in [
        ("base.tar.gz", ["base.tar.gz", "base.tar"]),
        ("pg_wal.tar.gz", ["pg_wal.tar.gz", "pg_wal.tar"]),
    ] {
        // Whatever lies there is tried (and refused when it is no regular file).
        let Some(path) = names
            .iter()
            .map(|n| base_dir.join(n))
            .find(|p| std::fs::symlink_metadata(p).is_ok())
        else {
            check
                .failures
                .push(format!("{label} is missing from {}", base_dir.display()));
            continue;
        };
        let mut report = |done, total| {
            progress(Progress {
                file: label,
                done,
                total,
            })
        };
        let is_base = label == "base.tar.gz";
        // A manifest beside the tarballs is checked while base.tar.gz streams past.
        let beside = base_dir.join("backup_manifest");
        let mut manifest_check = None;
        // Only a regular file is a manifest (a fifo there is reported by the scan).
        let read_beside =
            is_base && std::fs::symlink_metadata(&beside).is_ok_and(|m| m.file_type().is_file());
        if read_beside {
            let bytes = safe_open::read_capped(&beside, MANIFEST_LIMIT, "backup_manifest");
            let mut outcome = ManifestOutcome {
                found_in: "base/backup_manifest".into(),
                ..ManifestOutcome::default()
            };
            match bytes.map(|bytes| BackupManifest::parse(&bytes)) {
                Ok(Ok(manifest)) => {
                    outcome.wal_ranges = manifest.wal_ranges.clone();
                    outcome.system_identifier = manifest.system_identifier;
                    manifest_check = Some(ManifestCheck::new(&manifest));
                }
                Ok(Err(e)) => outcome.mismatches.push(e.to_string()),
                Err(e) => match ReadFailure::of(&e) {
                    // Not read is not damaged: the base's state is unknown.
                    ReadFailure::Damaged(_) => outcome
                        .mismatches
                        .push(format!("backup_manifest cannot be read: {e}")),
                    failure => {
                        check
                            .failures
                            .push(format!("backup_manifest cannot be read: {e}"));
                        check.access.get_or_insert(failure);
                    }
                },
            }
            check.manifest = Some(Box::new(outcome));
        }
        let options = PassOptions {
            manifest: manifest_check.as_mut(),
            crc_every_file: is_base && check.manifest.is_none(),
        };
        match base_backup::read_tarball_checked(&path, options, &mut report) {
            Ok(found) => {
                check.bytes += found.compressed_bytes;
                if !is_base {
                    check.pg_wal_segments = found.wal_segments;
                    continue;
                }
                if let (Some(manifest), Some(outcome)) = (manifest_check, check.manifest.as_mut()) {
                    outcome.mismatches.extend(manifest.finish());
                    outcome.complete = true;
                } else if let Some(bytes) = &found.manifest_entry {
                    check.manifest = Some(Box::new(embedded_manifest(bytes, &found.file_crcs)));
                }
                check.label = found.label;
                check.system_identifier = found.control.map(|(sysid, _, _)| sysid);
                if let Some(outcome) = check.manifest.as_mut()
                    && let (Some(listed), Some(actual)) =
                        (outcome.system_identifier, check.system_identifier)
                    && listed != actual
                {
                    outcome.mismatches.push(format!(
                        "backup_manifest is for database system {listed}, global/pg_control in base.tar.gz says {actual}"
                    ));
                }
                if check.label.is_none() {
                    check
                        .failures
                        .push(format!("{} holds no backup_label", path.display()));
                }
                if check.system_identifier.is_none() {
                    check
                        .failures
                        .push(format!("{} holds no global/pg_control", path.display()));
                }
            }
            Err(e) => {
                if let base_backup::BaseBackupError::Io { source, .. } = &e {
                    let failure = ReadFailure::of(source);
                    if !matches!(failure, ReadFailure::Damaged(_)) {
                        check.access.get_or_insert(failure);
                    }
                }
                check.failures.push(e.to_string())
            }
        }
    }
    check
}

/// How much of a segment file is read per call: large enough that the
/// inflater works in long runs (an 8 KiB `io::copy` buffer costs ~10 % more
/// calls into zlib-rs), small enough that two workers stay in L2.
const READ_CHUNK: usize = 256 * 1024;

/// A manifest found inside base.tar.gz (it comes last): compared with the
/// sizes and CRC-32Cs kept while the files streamed past. A manifest with
/// another algorithm gets its sizes compared; its checksums would need a
/// second pass.
fn embedded_manifest(bytes: &[u8], files: &[(String, u64, u32)]) -> ManifestOutcome {
    let mut outcome = ManifestOutcome {
        found_in: "base.tar.gz".into(),
        ..ManifestOutcome::default()
    };
    let manifest = match BackupManifest::parse(bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            outcome.mismatches.push(e.to_string());
            return outcome;
        }
    };
    outcome.wal_ranges = manifest.wal_ranges.clone();
    outcome.system_identifier = manifest.system_identifier;
    let mut check = ManifestCheck::new(&manifest);
    for (path, size, crc) in files {
        if let Some((index, _)) = check.begin(path) {
            check.end_with_crc32c(index, *size, *crc);
        }
    }
    outcome.mismatches = check.finish();
    outcome.complete = true;
    outcome
}

/// The largest backup_manifest read from beside the tarballs (see
/// `base_backup`'s limit for one inside them): room for seven million files.
const MANIFEST_LIMIT: u64 = 1 << 30;

/// Reads a segment to its end (validating gzip when compressed) and parses
/// its header; never more than the largest segment PostgreSQL allows.
pub fn check_segment(path: &Path) -> SegmentCheck {
    check_segment_sized(path, None)
}

/// Reads a segment of `seg_size` bytes to its end: a regular file only, at
/// most `seg_size + 1` bytes inflated (a gzip bomb is corrupt past that),
/// a file larger than any such segment judged from its size alone.
pub fn check_segment_sized(path: &Path, seg_size: Option<u32>) -> SegmentCheck {
    let name = path
        .file_name()
        .map(crate::display::escape_name)
        .unwrap_or_default();
    let mut size = 0;
    let mut head = Vec::with_capacity(LONG_HEADER_LEN);
    let stream = (|| -> io::Result<u64> {
        let mut reader = SegmentReader::open(path, seg_size)?;
        size = reader.size;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut unpacked = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if head.len() < LONG_HEADER_LEN {
                let wanted = (LONG_HEADER_LEN - head.len()).min(n);
                head.extend_from_slice(&buf[..wanted]);
            }
            unpacked += n as u64;
        }
        Ok(unpacked)
    })();
    if size == 0 {
        size = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    }
    let header = LongPageHeader::parse(&head).map_err(|e| e.to_string());
    let stream_error = match stream {
        Err(e) => Some(ReadFailure::of(&e)),
        Ok(unpacked) => {
            // The archive's size when known: a bomb is one whatever its first page says.
            let expected = seg_size
                .or_else(|| header.as_ref().ok().map(|h| h.seg_size))
                .map(u64::from);
            match expected {
                Some(limit) if unpacked > limit => Some(ReadFailure::Damaged(format!(
                    "it inflates past {limit} bytes, a segment's size: stopped there"
                ))),
                Some(limit) if unpacked != limit && header.is_ok() => Some(ReadFailure::Damaged(
                    format!("{unpacked} bytes unpacked, a segment has {limit}"),
                )),
                _ => None,
            }
        }
    };
    SegmentCheck {
        name,
        size,
        stream_error,
        header,
    }
}
