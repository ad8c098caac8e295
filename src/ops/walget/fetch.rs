//! One file from the archive into a destination, verified on the way.
//!
//! A segment is looked up as `<name>.gz`, then `<name>` (an archive may hold
//! both kinds), streamed through the decompressor into the destination, and
//! judged with the checks' own verdict ([`SegmentCheck::verdict`]): a whole
//! gzip stream (CRC and length), exactly one segment, a long page header of
//! this segment size and this database system, whose page address is the
//! segment's. The header's timeline may be an ancestor of the name's on the
//! restore's line (the first segment of a timeline that began mid-segment
//! carries the parent's), but a parent's file from the segment of its switch
//! to the next timeline on is never served: it holds the tail the switch
//! abandoned. A header that already condemns the file stops the
//! copy at once. A refused file is removed: PostgreSQL never sees it.
//! `.history` files must parse as timeline history.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::plan::WalGetPlan;
use crate::archive::wal::{
    LONG_HEADER_LEN, LongPageHeader, Lsn, SegmentId, Timeline, parse_timeline_history,
};
use crate::checks::integrity::{ReadFailure, SegmentCheck, SegmentVerdict};
use crate::pg::pglog::walget_line::RefusalCode;

/// Read and write size: large enough that the decompressor, not syscalls,
/// sets the pace, small enough that the buffer stays in the core's L2 cache
/// between inflating into it and copying it into the page cache. Measured on
/// the replay bench's 131 segments: 1 MiB cost 1.9-3.3 s of CPU, 256 KiB 1.3 s.
const CHUNK: usize = 256 << 10;
/// A `.history` file larger than this is not one (they grow by a line per promotion).
const MAX_HISTORY: u64 = 16 << 20;

/// Why a file was not handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Neither `<name>.gz` nor `<name>` is in the archive.
    NotInArchive,
    /// The file is there but must not be used, or could not be served.
    Refused { code: RefusalCode, reason: String },
    /// A parent timeline's file from its switch segment on, never looked up:
    /// see [`WalGetPlan::abandoned_tail`].
    AbandonedTail { switch: Lsn },
}

impl FetchError {
    fn refused(code: RefusalCode, reason: impl Into<String>) -> FetchError {
        FetchError::Refused {
            code,
            reason: reason.into(),
        }
    }
}

/// What was handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes written (the segment size for a segment).
    pub bytes: u64,
    /// Size of the archive's file.
    pub archived: u64,
}

/// An archive file found for a name.
struct Source {
    file: File,
    path: PathBuf,
    compressed: bool,
    size: u64,
}

/// Opens `<stem>.gz`, else `<stem>`, in the archive.
fn open_source(archive_dir: &Path, stem: &str) -> Result<Source, FetchError> {
    for (name, compressed) in [(format!("{stem}.gz"), true), (stem.to_owned(), false)] {
        let path = archive_dir.join(&name);
        // A regular file only, never blocking: a FIFO named like a segment
        // would hang the replay waiting on this helper.
        match crate::archive::safe_open::open_regular(&path) {
            Ok((file, size)) => {
                return Ok(Source {
                    file,
                    path,
                    compressed,
                    size,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if crate::archive::safe_open::not_regular(&e).is_some() => {
                return Err(FetchError::refused(
                    RefusalCode::CorruptSegment,
                    format!("{} is {e}", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(FetchError::refused(
                    RefusalCode::ArchivePermission,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
            Err(e) => {
                return Err(FetchError::refused(
                    RefusalCode::HelperFailed,
                    format!("cannot open {}: {e}", path.display()),
                ));
            }
        }
    }
    Err(FetchError::NotInArchive)
}

/// Opens `dest` for writing, never through a link: the spool and pg_wal are
/// the PostgreSQL user's to write, and a link planted there (to an archive
/// file, say) must not be truncated and overwritten through.
fn create_dest(dest: &Path) -> Result<File, FetchError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
        .map_err(|e| write_error(dest, &e))
}

fn write_error(dest: &Path, e: &io::Error) -> FetchError {
    let code = if e.raw_os_error() == Some(nix::libc::ENOSPC) {
        RefusalCode::DiskFull
    } else {
        RefusalCode::HelperFailed
    };
    FetchError::refused(code, format!("cannot write {}: {e}", dest.display()))
}

fn reader(source: Source) -> Box<dyn Read> {
    let buffered = BufReader::with_capacity(CHUNK, source.file);
    if source.compressed {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    }
}

/// Copies segment `id` (named `name`) from the archive into `dest`, verified.
pub fn fetch_segment(
    plan: &WalGetPlan,
    id: SegmentId,
    name: &str,
    dest: &Path,
) -> Result<Fetched, FetchError> {
    fetch_segment_file(plan, id, name, dest).map(|(fetched, _)| fetched)
}

/// [`fetch_segment`], also returning the written file still open: the
/// prefetcher flushes it to disk on another thread, off PostgreSQL's
/// critical path, so PostgreSQL's own fsync of the restored file finds
/// nothing left to write.
pub fn fetch_segment_file(
    plan: &WalGetPlan,
    id: SegmentId,
    name: &str,
    dest: &Path,
) -> Result<(Fetched, File), FetchError> {
    // Whatever asks (the helper, the prefetcher), the tail a switch abandoned
    // is never handed over, however well it verifies.
    if let Some(switch) = plan.abandoned_tail(id) {
        return Err(FetchError::AbandonedTail { switch });
    }
    let source = open_source(&plan.archive_dir, name)?;
    let archived = source.size;
    let shown = source
        .path
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
    let result = copy_segment(plan, id, &shown, source, dest);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result.map(|(bytes, file)| (Fetched { bytes, archived }, file))
}

fn copy_segment(
    plan: &WalGetPlan,
    id: SegmentId,
    shown: &str,
    source: Source,
    dest: &Path,
) -> Result<(u64, File), FetchError> {
    let seg_size = plan.segment_size as u64;
    let archived = source.size;
    let mut input = reader(source);
    let mut out = create_dest(dest)?;
    let mut buf = vec![0u8; CHUNK];
    let mut head: Vec<u8> = Vec::with_capacity(LONG_HEADER_LEN);
    let mut header_judged = false;
    let mut written = 0u64;
    let check = |head: &[u8], stream_error: Option<ReadFailure>| SegmentCheck {
        name: shown.to_owned(),
        size: archived,
        stream_error,
        header: LongPageHeader::parse(head).map_err(|e| e.to_string()),
    };
    let stream_error = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(ReadFailure::of(&e)),
        };
        if head.len() < LONG_HEADER_LEN {
            let wanted = (LONG_HEADER_LEN - head.len()).min(n);
            head.extend_from_slice(&buf[..wanted]);
        }
        if !header_judged && head.len() == LONG_HEADER_LEN {
            header_judged = true;
            // A foreign or misnamed file is refused before 16 MiB are inflated for nothing.
            judge(plan, id, &check(&head, None))?;
            preallocate(&out, seg_size);
        }
        written += n as u64;
        if written > seg_size {
            break Some(ReadFailure::Damaged(format!(
                "more than {seg_size} bytes unpacked: not one segment"
            )));
        }
        out.write_all(&buf[..n])
            .map_err(|e| write_error(dest, &e))?;
    };
    let stream_error = stream_error.or_else(|| {
        (written != seg_size).then(|| {
            ReadFailure::Damaged(format!(
                "{written} bytes unpacked, a segment has {seg_size}"
            ))
        })
    });
    judge(plan, id, &check(&head, stream_error))?;
    Ok((written, out))
}

/// Reserves the whole segment's blocks before writing it: the filesystem
/// then allocates once instead of per page (about 10 % less CPU per segment
/// on ext4). Best effort: where it is not supported, the writes allocate.
/// A file that turns out short is removed by the caller, so the reserved
/// length is never handed over.
fn preallocate(out: &File, len: u64) {
    let _ = nix::fcntl::fallocate(
        out,
        nix::fcntl::FallocateFlags::empty(),
        0,
        len as nix::libc::off_t,
    );
}

/// The checks' verdict, held to the line: a header on an older timeline
/// than the name's must be one of the line's ancestors (the first segment of
/// a timeline that began inside a segment is a copy of its parent's).
fn judge(plan: &WalGetPlan, id: SegmentId, check: &SegmentCheck) -> Result<(), FetchError> {
    match check.verdict(Some(plan.system_identifier), Some(plan.segment_size)) {
        SegmentVerdict::Good => match &check.header {
            Ok(header)
                if Timeline(header.timeline) != id.timeline
                    && !plan.header_timeline_fits(id.timeline, Timeline(header.timeline)) =>
            {
                Err(FetchError::refused(
                    RefusalCode::MisnamedSegment,
                    format!(
                        "its first page header is on timeline {}, not on the line to timeline {}",
                        header.timeline, id.timeline.0
                    ),
                ))
            }
            _ => Ok(()),
        },
        SegmentVerdict::Misnamed { header_says } => Err(FetchError::refused(
            RefusalCode::MisnamedSegment,
            format!("its first page header says it is {header_says}"),
        )),
        SegmentVerdict::NotRegular { kind } => Err(FetchError::refused(
            RefusalCode::CorruptSegment,
            format!("a {}, not a regular file", kind.as_str()),
        )),
        SegmentVerdict::Unreadable { reason, denied } => Err(FetchError::refused(
            if denied {
                RefusalCode::ArchivePermission
            } else {
                RefusalCode::HelperFailed
            },
            reason,
        )),
        SegmentVerdict::Foreign {
            system_identifier,
            expected,
        } => Err(FetchError::refused(
            RefusalCode::ForeignSegment,
            format!(
                "system identifier {system_identifier} in its header, the base backup's is {expected}"
            ),
        )),
        SegmentVerdict::Corrupt { reason } => {
            Err(FetchError::refused(RefusalCode::CorruptSegment, reason))
        }
    }
}

/// Copies `<tli>.history` into `dest` after checking it reads as a history file.
pub fn fetch_history(plan: &WalGetPlan, name: &str, dest: &Path) -> Result<Fetched, FetchError> {
    let source = open_source(&plan.archive_dir, name)?;
    let archived = source.size;
    let mut text = Vec::new();
    reader(source)
        .take(MAX_HISTORY + 1)
        .read_to_end(&mut text)
        .map_err(|e| {
            FetchError::refused(
                RefusalCode::CorruptSegment,
                format!("not a valid stream: {e}"),
            )
        })?;
    if text.len() as u64 > MAX_HISTORY {
        return Err(FetchError::refused(
            RefusalCode::CorruptSegment,
            "larger than any timeline history file",
        ));
    }
    let parsed = std::str::from_utf8(&text)
        .map_err(|e| e.to_string())
        .and_then(|t| parse_timeline_history(t).map_err(|e| e.to_string()));
    if let Err(reason) = parsed {
        return Err(FetchError::refused(
            RefusalCode::CorruptSegment,
            format!("not a timeline history file: {reason}"),
        ));
    }
    write_whole(dest, &text)?;
    Ok(Fetched {
        bytes: text.len() as u64,
        archived,
    })
}

/// Anything else PostgreSQL may ask for, copied (decompressed) as it is.
pub fn fetch_other(plan: &WalGetPlan, name: &str, dest: &Path) -> Result<Fetched, FetchError> {
    let source = open_source(&plan.archive_dir, name)?;
    let archived = source.size;
    let mut input = reader(source);
    let mut out = create_dest(dest)?;
    let bytes = io::copy(&mut input, &mut out).map_err(|e| {
        let _ = std::fs::remove_file(dest);
        FetchError::refused(
            RefusalCode::CorruptSegment,
            format!("not a valid stream: {e}"),
        )
    })?;
    Ok(Fetched { bytes, archived })
}

fn write_whole(dest: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let mut out = create_dest(dest)?;
    out.write_all(bytes).map_err(|e| {
        let _ = std::fs::remove_file(dest);
        write_error(dest, &e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{Cluster, gzip};
    use crate::ops::walget::plan::tests::{SEG, three_timelines};

    struct Case {
        _dir: tempfile::TempDir,
        plan: WalGetPlan,
        cluster: Cluster,
    }

    fn case() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let plan = three_timelines(dir.path());
        std::fs::create_dir_all(&plan.archive_dir).unwrap();
        let cluster = Cluster::new(plan.system_identifier, SEG);
        Case {
            _dir: dir,
            plan,
            cluster,
        }
    }

    fn put(case: &Case, name: &str, bytes: &[u8]) {
        std::fs::write(case.plan.archive_dir.join(name), bytes).unwrap();
    }

    /// The cluster's good segment `segno` of timeline 1, archived gzip'ed.
    fn put_good(case: &Case, segno: u64) -> SegmentId {
        let id = case.cluster.id(1, segno);
        let name = format!("{}.gz", id.file_name(SEG));
        put(case, &name, &gzip(&case.cluster.segment_bytes(id)).unwrap());
        id
    }

    fn fetch(case: &Case, name: &str) -> Result<Fetched, FetchError> {
        let id = case.plan.resolve(name).unwrap();
        let dest = case.plan.archive_dir.with_file_name("RECOVERYXLOG");
        // PostgreSQL removes it before every request.
        let _ = std::fs::remove_file(&dest);
        let result = fetch_segment(&case.plan, id, name, &dest);
        assert_eq!(dest.exists(), result.is_ok(), "a refused file is removed");
        result
    }

    fn code(result: Result<Fetched, FetchError>) -> RefusalCode {
        match result {
            Err(FetchError::Refused { code, .. }) => code,
            other => panic!("{other:?}"),
        }
    }

    /// The destination is the PostgreSQL user's to write: a link planted
    /// there (to an archive file) is refused, never truncated or written through.
    #[test]
    fn a_link_at_the_destination_is_never_written_through() {
        let c = case();
        let id = put_good(&c, 5);
        put(&c, "000000010000000000000004.gz", b"another archived file");
        let dest = c.plan.archive_dir.with_file_name("RECOVERYXLOG");
        std::os::unix::fs::symlink(
            c.plan.archive_dir.join("000000010000000000000004.gz"),
            &dest,
        )
        .unwrap();
        let result = fetch_segment(&c.plan, id, "000000010000000000000005", &dest);
        assert_eq!(code(result), RefusalCode::HelperFailed);
        assert_eq!(
            std::fs::read(c.plan.archive_dir.join("000000010000000000000004.gz")).unwrap(),
            b"another archived file"
        );
    }

    #[test]
    fn a_good_segment_is_handed_over_whole_compressed_or_plain() {
        let c = case();
        put_good(&c, 5);
        let got = fetch(&c, "000000010000000000000005").unwrap();
        assert_eq!(got.bytes, SEG as u64);
        let id = c.cluster.id(1, 6);
        put(&c, "000000010000000000000006", &c.cluster.segment_bytes(id));
        assert_eq!(
            fetch(&c, "000000010000000000000006").unwrap().bytes,
            SEG as u64
        );
        assert_eq!(
            fetch(&c, "000000010000000000000007"),
            Err(FetchError::NotInArchive)
        );
    }

    #[test]
    fn the_switch_segment_may_carry_its_parents_timeline_but_nothing_else() {
        let c = case();
        // Timeline 2 began inside segment 8: its first segment says timeline 1.
        put(
            &c,
            "000000020000000000000008.gz",
            &gzip(&c.cluster.segment_bytes(c.cluster.id(1, 8))).unwrap(),
        );
        assert!(fetch(&c, "000000020000000000000008").is_ok());
        // Timeline 3 (began at 0/C000000) may carry 1 or 2, never a later one.
        put(
            &c,
            "00000003000000000000000D.gz",
            &gzip(&c.cluster.segment_bytes(c.cluster.id(2, 0xD))).unwrap(),
        );
        assert!(fetch(&c, "00000003000000000000000D").is_ok());
        put(
            &c,
            "00000002000000000000000A.gz",
            &gzip(&c.cluster.segment_bytes(c.cluster.id(3, 0xA))).unwrap(),
        );
        assert_eq!(
            code(fetch(&c, "00000002000000000000000A")),
            RefusalCode::MisnamedSegment
        );
        // A renamed file: the page address names segment 7.
        put(
            &c,
            "000000010000000000000005.gz",
            &gzip(&c.cluster.segment_bytes(c.cluster.id(1, 7))).unwrap(),
        );
        assert_eq!(
            code(fetch(&c, "000000010000000000000005")),
            RefusalCode::MisnamedSegment
        );
    }

    #[test]
    fn foreign_truncated_and_oversized_files_are_refused() {
        let c = case();
        let other = Cluster::new(42, SEG);
        put(
            &c,
            "000000010000000000000005.gz",
            &gzip(&other.segment_bytes(other.id(1, 5))).unwrap(),
        );
        let refused = fetch(&c, "000000010000000000000005");
        assert_eq!(code(refused.clone()), RefusalCode::ForeignSegment);
        assert!(format!("{refused:?}").contains("42"));

        let gz = gzip(&c.cluster.segment_bytes(c.cluster.id(1, 6))).unwrap();
        put(&c, "000000010000000000000006.gz", &gz[..gz.len() - 9]);
        assert_eq!(
            code(fetch(&c, "000000010000000000000006")),
            RefusalCode::CorruptSegment
        );

        let mut two = c.cluster.segment_bytes(c.cluster.id(1, 7));
        two.extend_from_slice(&c.cluster.segment_bytes(c.cluster.id(1, 8)));
        put(&c, "000000010000000000000007.gz", &gzip(&two).unwrap());
        assert_eq!(
            code(fetch(&c, "000000010000000000000007")),
            RefusalCode::CorruptSegment
        );

        let half = &c.cluster.segment_bytes(c.cluster.id(1, 3))[..SEG as usize / 2];
        put(&c, "000000010000000000000003", half);
        assert_eq!(
            code(fetch(&c, "000000010000000000000003")),
            RefusalCode::CorruptSegment
        );
    }

    #[test]
    fn history_files_must_read_as_history() {
        let c = case();
        let dest = c.plan.archive_dir.with_file_name("RECOVERYHISTORY");
        put(
            &c,
            "00000002.history.gz",
            &gzip(b"1\t0/8800000\tno recovery target specified\n").unwrap(),
        );
        assert!(fetch_history(&c.plan, "00000002.history", &dest).is_ok());
        put(&c, "00000003.history", b"garbage here\n");
        assert!(matches!(
            fetch_history(&c.plan, "00000003.history", &dest),
            Err(FetchError::Refused {
                code: RefusalCode::CorruptSegment,
                ..
            })
        ));
        assert_eq!(
            fetch_history(&c.plan, "00000004.history", &dest),
            Err(FetchError::NotInArchive)
        );
    }
}
