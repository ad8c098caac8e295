//! Integrity primitives: a base backup's tarballs and a segment read to
//! their very end (every gzip CRC, the backup label, pg_control, the
//! backup_manifest compared while the files stream past, the segment's page
//! header) and judged against the archive's facts. The verification window,
//! the deep check and the quick check all judge with these, so a file is
//! good or bad the same way everywhere.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::archive::base_backup::{self, BackupLabel, PassOptions};
use crate::archive::manifest::{BackupManifest, ManifestCheck, WalRange};
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

/// What reading one new segment end to end found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentCheck {
    pub name: String,
    pub size: u64,
    /// `None` when the file is readable and (if compressed) a valid gzip stream to its end.
    pub stream_error: Option<String>,
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
}

impl SegmentCheck {
    /// Judges what was read: a stream that does not read to its end, a bad
    /// header or another segment size is corrupt; another system identifier is
    /// foreign (the root cause, so it comes before the name); a header naming
    /// another segment is misnamed. `None` skips that comparison.
    pub fn verdict(&self, expected_sysid: Option<u64>, seg_size: Option<u32>) -> SegmentVerdict {
        if let Some(error) = &self.stream_error {
            return SegmentVerdict::Corrupt {
                reason: format!("not a valid stream: {error}"),
            };
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
        let Some(path) = names.iter().map(|n| base_dir.join(n)).find(|p| p.is_file()) else {
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
        if is_base && let Ok(bytes) = std::fs::read(&beside) {
            let mut outcome = ManifestOutcome {
                found_in: "base/backup_manifest".into(),
                ..ManifestOutcome::default()
            };
            match BackupManifest::parse(&bytes) {
                Ok(manifest) => {
                    outcome.wal_ranges = manifest.wal_ranges.clone();
                    outcome.system_identifier = manifest.system_identifier;
                    manifest_check = Some(ManifestCheck::new(&manifest));
                }
                Err(e) => outcome.mismatches.push(e.to_string()),
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
            Err(e) => check.failures.push(e.to_string()),
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

/// Reads a segment to its end (validating gzip when compressed) and parses its header.
pub fn check_segment(path: &Path) -> SegmentCheck {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::with_capacity(LONG_HEADER_LEN);
    let stream = (|| -> io::Result<u64> {
        let file = BufReader::with_capacity(READ_CHUNK, File::open(path)?);
        let mut reader: Box<dyn Read> = if name.ends_with(".gz") {
            Box::new(flate2::bufread::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
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
    let header = LongPageHeader::parse(&head).map_err(|e| e.to_string());
    let stream_error = match stream {
        Err(e) => Some(e.to_string()),
        Ok(unpacked) => match &header {
            Ok(h) if unpacked != h.seg_size as u64 => Some(format!(
                "{unpacked} bytes unpacked, a segment has {}",
                h.seg_size
            )),
            _ => None,
        },
    };
    SegmentCheck {
        name,
        size,
        stream_error,
        header,
    }
}
