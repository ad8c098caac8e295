//! Reading what pg_basebackup wrote: the backup label, PG_VERSION and
//! pg_control inside `base.tar.gz`, the first WAL header inside
//! `pg_wal.tar.gz`, and the `.backup` history file in the archive.
//!
//! Tarballs can be many GB, so every reader streams and stops as soon as it
//! has what it came for: `backup_label` is the first entry and `PG_VERSION`
//! follows within a few entries. `global/pg_control` is the last entry, so the
//! system identifier from it costs a full decompression and is cached by the
//! caller (see `cache.rs`); the cheap identifier comes from the WAL header.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;
use thiserror::Error;

use crate::archive::manifest::ManifestCheck;
use crate::archive::safe_open;
use crate::archive::wal::{
    HistoryEntry, LONG_HEADER_LEN, LongPageHeader, Lsn, RawSegmentName, Timeline,
    parse_timeline_history,
};

#[derive(Debug, Error)]
pub enum BaseBackupError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} has no {entry} entry")]
    MissingEntry { path: PathBuf, entry: &'static str },
    #[error("{path}: backup_label is not valid: {reason}")]
    BadLabel { path: PathBuf, reason: String },
    #[error("{path}: {entry} is too short ({len} bytes)")]
    ShortEntry {
        path: PathBuf,
        entry: String,
        len: usize,
    },
    #[error("{path}: first WAL segment header: {source}")]
    BadWalHeader {
        path: PathBuf,
        source: crate::archive::wal::WalError,
    },
}

/// The text file pg_basebackup puts first in base.tar.gz; the `.backup`
/// history file in the archive has the same lines plus STOP ones.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct BackupLabel {
    #[serde(serialize_with = "crate::serde_util::lsn")]
    pub start_lsn: Lsn,
    /// The segment named in `START WAL LOCATION: ... (file X)`.
    pub start_segment: String,
    /// `CHECKPOINT LOCATION`: recovery's timeline must hold this point.
    #[serde(serialize_with = "crate::serde_util::opt_lsn")]
    pub checkpoint_lsn: Option<Lsn>,
    pub start_timeline: u32,
    pub label: String,
    /// As written (`2026-11-25 13:08:37 UTC`); the zone is the server's.
    pub start_time_text: String,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub start_time: Option<SystemTime>,
    #[serde(serialize_with = "crate::serde_util::opt_lsn")]
    pub stop_lsn: Option<Lsn>,
    pub stop_segment: Option<String>,
    #[serde(serialize_with = "crate::serde_util::opt_time")]
    pub stop_time: Option<SystemTime>,
}

impl BackupLabel {
    pub fn parse(text: &str) -> Result<BackupLabel, String> {
        let mut label = BackupLabel::default();
        let mut seen_start = false;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            let value = value.trim();
            match key {
                "START WAL LOCATION" => {
                    let (lsn, file) = parse_location(value).ok_or_else(|| {
                        format!("START WAL LOCATION {value:?} is not `LSN (file NAME)`")
                    })?;
                    label.start_lsn = lsn;
                    label.start_segment = file;
                    seen_start = true;
                }
                "STOP WAL LOCATION" => {
                    if let Some((lsn, file)) = parse_location(value) {
                        label.stop_lsn = Some(lsn);
                        label.stop_segment = Some(file);
                    }
                }
                "CHECKPOINT LOCATION" => label.checkpoint_lsn = Lsn::parse(value),
                "START TIMELINE" => label.start_timeline = value.parse().unwrap_or(0),
                "LABEL" => label.label = value.to_owned(),
                "START TIME" => {
                    label.start_time_text = value.to_owned();
                    label.start_time = parse_pg_time(value);
                }
                "STOP TIME" => label.stop_time = parse_pg_time(value),
                _ => {}
            }
        }
        if !seen_start {
            return Err("no START WAL LOCATION line".into());
        }
        if label.start_timeline == 0 {
            label.start_timeline =
                RawSegmentName::parse(&label.start_segment).map_or(1, |r| r.timeline);
        }
        Ok(label)
    }
}

/// `0/7000028 (file 000000010000000000000007)`
fn parse_location(value: &str) -> Option<(Lsn, String)> {
    let (lsn, rest) = value.split_once(' ')?;
    let file = rest.trim().strip_prefix("(file ")?.strip_suffix(')')?;
    RawSegmentName::parse(file)?;
    Some((Lsn::parse(lsn)?, file.to_owned()))
}

/// Times in labels are `%Y-%m-%d %H:%M:%S %Z`; only UTC-like zones can be
/// resolved without a zone database, the rest stay text.
fn parse_pg_time(value: &str) -> Option<SystemTime> {
    let (stamp, zone) = value.rsplit_once(' ')?;
    match zone {
        "UTC" | "GMT" | "+00" | "Z" => humantime::parse_rfc3339_weak(stamp).ok(),
        _ => None,
    }
}

/// What the first entries of base.tar.gz tell, without reading the rest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseTarHead {
    pub label: BackupLabel,
    pub pg_version: Option<String>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BaseBackupError + '_ {
    move |source| BaseBackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens a tarball (a regular file only), gzip'ed when its name ends in
/// `.gz`; `max_unpacked` bounds what may be inflated from it, for the
/// readers that only want its first entries.
fn open_tar(
    path: &Path,
    max_unpacked: Option<u64>,
) -> Result<tar::Archive<Box<dyn Read>>, BaseBackupError> {
    let (file, _) = safe_open::open_regular(path).map_err(io_err(path))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            64 * 1024,
            file,
        )))
    } else {
        Box::new(BufReader::new(file))
    };
    let reader: Box<dyn Read> = match max_unpacked {
        Some(limit) => Box::new(reader.take(limit)),
        None => reader,
    };
    Ok(tar::Archive::new(reader))
}

/// How much of a tarball the readers of its first entries inflate at most:
/// the label and PG_VERSION (or the first WAL segment) come long before, and
/// a gzip bomb costs a second, not the scan its liveness.
const HEAD_UNPACKED_LIMIT: u64 = 1 << 30;

fn entry_name(entry: &tar::Entry<'_, Box<dyn Read>>) -> String {
    let path = entry
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.strip_prefix("./").unwrap_or(&path).to_owned()
}

/// How many entries to look at for PG_VERSION before giving up: it sits
/// within the first ten in every version seen, but the label must not cost a
/// walk through a multi-GB tarball.
const HEAD_ENTRY_LIMIT: usize = 64;

pub fn read_base_head(path: &Path) -> Result<BaseTarHead, BaseBackupError> {
    let mut archive = open_tar(path, Some(HEAD_UNPACKED_LIMIT))?;
    let mut label = None;
    let mut pg_version = None;
    for (index, entry) in archive.entries().map_err(io_err(path))?.enumerate() {
        if index >= HEAD_ENTRY_LIMIT || (label.is_some() && pg_version.is_some()) {
            break;
        }
        let mut entry = entry.map_err(io_err(path))?;
        match entry_name(&entry).as_str() {
            "backup_label" => {
                let text = read_small(&mut entry, path)?;
                label = Some(BackupLabel::parse(&text).map_err(|reason| {
                    BaseBackupError::BadLabel {
                        path: path.to_owned(),
                        reason,
                    }
                })?);
            }
            "PG_VERSION" => pg_version = Some(read_small(&mut entry, path)?.trim().to_owned()),
            _ => {}
        }
    }
    let label = label.ok_or_else(|| BaseBackupError::MissingEntry {
        path: path.to_owned(),
        entry: "backup_label",
    })?;
    Ok(BaseTarHead { label, pg_version })
}

fn read_small(entry: &mut impl Read, path: &Path) -> Result<String, BaseBackupError> {
    let mut text = String::new();
    entry
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    Ok(text)
}

/// The facts only a full pass over base.tar.gz gives: the system identifier
/// from `global/pg_control` (last entry) and the unpacked size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseTarFull {
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version: u32,
    pub unpacked_bytes: u64,
    pub entries: u64,
}

pub fn read_base_full(path: &Path) -> Result<BaseTarFull, BaseBackupError> {
    let pass = read_tarball_to_end(path, &mut |_, _| {})?;
    let (system_identifier, pg_control_version, catalog_version) =
        pass.control.ok_or_else(|| BaseBackupError::MissingEntry {
            path: path.to_owned(),
            entry: "global/pg_control",
        })?;
    Ok(BaseTarFull {
        system_identifier,
        pg_control_version,
        catalog_version,
        unpacked_bytes: pass.unpacked_bytes,
        entries: pass.entries,
    })
}

/// Everything one pass over a base tarball to its very end gives.
#[derive(Debug, Clone, Default)]
pub struct TarballPass {
    pub compressed_bytes: u64,
    pub label: Option<BackupLabel>,
    /// System identifier, pg_control version and catalog version from `global/pg_control`.
    pub control: Option<(u64, u32, u32)>,
    pub unpacked_bytes: u64,
    pub entries: u64,
    /// File names of the WAL segments among the entries (pg_wal.tar.gz's content).
    pub wal_segments: Vec<String>,
    /// A `backup_manifest` entry's bytes (pg_basebackup to stdout puts it inside).
    pub manifest_entry: Option<Vec<u8>>,
    /// `(path, size, CRC-32C)` of every regular file, when asked for (see
    /// `PassOptions::crc_every_file`): an embedded manifest comes last, after
    /// the files it describes have streamed past.
    pub file_crcs: Vec<(String, u64, u32)>,
}

/// What to check on the way through a tarball besides its streams.
#[derive(Default)]
pub struct PassOptions<'a> {
    /// Every file's size and checksum compared with a manifest found beside the tarball.
    pub manifest: Option<&'a mut ManifestCheck>,
    /// Keep a CRC-32C of every file, for a manifest found inside the tarball.
    pub crc_every_file: bool,
}

/// Counts the bytes read from the file, for progress.
struct Counting<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The largest backup_manifest read from inside a tarball: PostgreSQL's is
/// ~140 bytes per file, so this is room for seven million files.
const MANIFEST_LIMIT: usize = 1 << 30;

/// Reads a (gzip'ed) tarball to its very end, through the gzip trailer so
/// every CRC and length is checked, reporting `(compressed bytes read, total)`
/// after each entry. The one full pass behind pg_control facts, the
/// verification window and `check --deep`.
pub fn read_tarball_to_end(
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TarballPass, BaseBackupError> {
    read_tarball_checked(path, PassOptions::default(), progress)
}

/// [`read_tarball_to_end`], with every regular file's bytes also fed to the
/// checks `options` asks for (a manifest, CRC-32Cs): still one pass.
pub fn read_tarball_checked(
    path: &Path,
    mut options: PassOptions<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TarballPass, BaseBackupError> {
    let (file, total) = safe_open::open_regular(path).map_err(io_err(path))?;
    let count = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counting = Counting {
        inner: BufReader::with_capacity(256 * 1024, file),
        count: count.clone(),
    };
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(counting))
    } else {
        Box::new(counting)
    };
    let mut pass = TarballPass {
        compressed_bytes: total,
        ..TarballPass::default()
    };
    let mut buf = vec![0u8; 256 * 1024];
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries().map_err(io_err(path))? {
            let mut entry = entry.map_err(io_err(path))?;
            pass.entries += 1;
            pass.unpacked_bytes += entry.header().size().unwrap_or(0);
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_owned())
                .unwrap_or_default();
            if !entry.header().entry_type().is_file() {
                progress(count.get(), total);
                continue;
            }
            let file_name = name.rsplit('/').next().unwrap_or(&name);
            if RawSegmentName::parse(file_name).is_some() {
                pass.wal_segments.push(file_name.to_owned());
            }
            // The few entries whose content is parsed are kept (bounded); the rest only streams past.
            let keep_limit = match name.as_str() {
                "backup_label" => 64 * 1024,
                "global/pg_control" => 16,
                "backup_manifest" => MANIFEST_LIMIT,
                _ => 0,
            };
            let mut kept = Vec::new();
            let mut compared = options.manifest.as_mut().and_then(|m| m.begin(&name));
            let mut crc = options.crc_every_file.then_some(0u32);
            let mut size = 0u64;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(path)(e)),
                };
                let chunk = &buf[..n];
                size += n as u64;
                if let Some((_, digest)) = &mut compared {
                    digest.update(chunk);
                }
                if let Some(crc) = &mut crc {
                    *crc = crc32c::crc32c_append(*crc, chunk);
                }
                if kept.len() < keep_limit {
                    let room = keep_limit - kept.len();
                    kept.extend_from_slice(&chunk[..room.min(n)]);
                }
            }
            if let (Some((index, digest)), Some(check)) = (compared, options.manifest.as_mut()) {
                check.end(index, size, digest);
            }
            if let Some(crc) = crc {
                pass.file_crcs.push((name.clone(), size, crc));
            }
            match name.as_str() {
                "backup_label" => {
                    pass.label = BackupLabel::parse(&String::from_utf8_lossy(&kept)).ok();
                }
                "global/pg_control" => {
                    if kept.len() < 16 {
                        return Err(BaseBackupError::ShortEntry {
                            path: path.to_owned(),
                            entry: "global/pg_control".into(),
                            len: kept.len(),
                        });
                    }
                    let u32_at = |o: usize| {
                        u32::from_le_bytes(kept[o..o + 4].try_into().unwrap_or_default())
                    };
                    pass.control = Some((
                        u64::from_le_bytes(kept[0..8].try_into().unwrap_or_default()),
                        u32_at(8),
                        u32_at(12),
                    ));
                }
                "backup_manifest" => pass.manifest_entry = Some(kept),
                _ => {}
            }
            progress(count.get(), total);
        }
    }
    // tar stops at its end marker; the gzip trailer (CRC, length) lies beyond it.
    io::copy(&mut reader, &mut io::sink()).map_err(io_err(path))?;
    progress(total, total);
    Ok(pass)
}

/// The long page header of the first WAL segment in pg_wal.tar.gz: its
/// xlp_sysid is the cluster's system identifier, read from a few KB.
pub fn read_pg_wal_first_header(path: &Path) -> Result<(String, LongPageHeader), BaseBackupError> {
    let mut archive = open_tar(path, Some(HEAD_UNPACKED_LIMIT))?;
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let name = entry_name(&entry);
        let file_name = name.rsplit('/').next().unwrap_or(&name).to_owned();
        if RawSegmentName::parse(&file_name).is_none() {
            continue;
        }
        let mut head = [0u8; LONG_HEADER_LEN];
        let len = read_up_to(&mut entry, &mut head).map_err(io_err(path))?;
        let header = LongPageHeader::parse(&head[..len]).map_err(|source| {
            BaseBackupError::BadWalHeader {
                path: path.to_owned(),
                source,
            }
        })?;
        return Ok((file_name, header));
    }
    Err(BaseBackupError::MissingEntry {
        path: path.to_owned(),
        entry: "WAL segment",
    })
}

/// The timeline history files in pg_wal.tar.gz. pg_basebackup streams the
/// history of the backup's own timeline (and so its ancestors') into it; a
/// restore's PostgreSQL finds them there when the archive lacks them. Reads
/// the whole tarball: call it only for a base on a timeline above 1.
pub fn read_pg_wal_histories(
    path: &Path,
) -> Result<Vec<(Timeline, Vec<HistoryEntry>)>, BaseBackupError> {
    let mut archive = open_tar(path, None)?;
    let mut found = Vec::new();
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let name = entry_name(&entry);
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        let Some(timeline) = file_name
            .strip_suffix(".history")
            .filter(|stem| stem.len() == 8)
            .and_then(|stem| u32::from_str_radix(stem, 16).ok())
        else {
            continue;
        };
        let mut text = String::new();
        // A history file is a line per ancestor: 1 MiB is far beyond any real one.
        (&mut entry)
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(io_err(path))?;
        // An unparsable copy is left out: the archive's own file, if any, is judged instead.
        if let Ok(entries) = parse_timeline_history(&text) {
            found.push((Timeline(timeline), entries));
        }
    }
    Ok(found)
}

/// Reads the first bytes of a (possibly gzip'ed) WAL segment file: a
/// regular file only, and no more of it than its first page needs.
pub fn read_segment_header(path: &Path) -> Result<LongPageHeader, BaseBackupError> {
    let (file, _) = safe_open::open_regular(path).map_err(io_err(path))?;
    // The first page inflates from its first 16 KiB; a gzip header with a
    // stored name may add a few more: 64 KiB of input is plenty.
    let input = BufReader::new(file.take(64 * 1024));
    let mut head = [0u8; LONG_HEADER_LEN];
    let len = if path.extension().is_some_and(|e| e == "gz") {
        read_up_to(&mut flate2::bufread::MultiGzDecoder::new(input), &mut head)
    } else {
        read_up_to(&mut { input }, &mut head)
    }
    .map_err(io_err(path))?;
    LongPageHeader::parse(&head[..len]).map_err(|source| BaseBackupError::BadWalHeader {
        path: path.to_owned(),
        source,
    })
}

/// The most a `.history` or `.backup` file is read: a history file is a
/// line per ancestor timeline and a backup history file a dozen lines, so
/// 1 MiB is far beyond any real one.
pub const SMALL_TEXT_LIMIT: u64 = 1 << 20;

/// Reads a whole small (possibly gzip'ed) text file such as a `.backup` or
/// `.history` file; a larger one is refused, not cut.
pub fn read_small_text(path: &Path) -> Result<String, BaseBackupError> {
    safe_open::read_text_capped(path, SMALL_TEXT_LIMIT, "history file").map_err(io_err(path))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\nCHECKPOINT LOCATION: 0/A000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 13:08:37 UTC\nLABEL: base_backup\nSTART TIMELINE: 1\n";

    #[test]
    fn parses_the_pg15_backup_label() {
        let label = BackupLabel::parse(LABEL).unwrap();
        assert_eq!(label.start_lsn, Lsn(0x7000028));
        assert_eq!(label.start_segment, "000000010000000000000007");
        assert_eq!(label.start_timeline, 1);
        assert_eq!(label.label, "base_backup");
        assert_eq!(
            label
                .start_time
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            Some("2026-11-25T13:08:37Z".into())
        );
        assert_eq!(label.stop_lsn, None);
    }

    #[test]
    fn parses_stop_lines_of_a_backup_history_file() {
        let text = format!(
            "{LABEL}STOP WAL LOCATION: 0/A000138 (file 00000001000000000000000A)\nSTOP TIME: 2026-11-25 13:08:44 UTC\nSTOP TIMELINE: 1\n"
        );
        let label = BackupLabel::parse(&text).unwrap();
        assert_eq!(label.stop_lsn, Some(Lsn(0xA000138)));
        assert_eq!(
            label.stop_segment.as_deref(),
            Some("00000001000000000000000A")
        );
        assert!(label.stop_time.is_some());
    }

    #[test]
    fn rejects_a_label_without_start_location() {
        assert!(BackupLabel::parse("LABEL: x\n").is_err());
        assert!(BackupLabel::parse("START WAL LOCATION: garbage\n").is_err());
    }

    #[test]
    fn keeps_non_utc_times_as_text() {
        let label = BackupLabel::parse(&LABEL.replace("UTC", "CET")).unwrap();
        assert_eq!(label.start_time, None);
        assert_eq!(label.start_time_text, "2026-11-25 13:08:37 CET");
    }
}
