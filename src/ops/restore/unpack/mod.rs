//! Unpacking a base backup's tarball (`base.tar.gz`, `pg_wal.tar.gz`, or a
//! plain `.tar`) into a data directory, safely and on one or two cores.
//!
//! Invariants:
//! - nothing is ever written outside `dest`: every entry is checked before it
//!   is written (no absolute path, no `..`, no entry below a symbolic link, no
//!   link target that leaves `dest`, no device or fifo), files are created
//!   with `O_CREAT|O_EXCL` (which never follows a symbolic link) after any
//!   old entry of that name is unlinked, and every parent directory is
//!   checked with `lstat` once to be a real directory, so a symbolic link
//!   already present under `dest` is never followed either;
//! - the first refused entry stops the unpack with an error naming it; what
//!   was written before stays in `dest` for the caller to roll back.
//!   [`scan_tarball`] applies the same checks without writing, so the caller
//!   can refuse before touching anything;
//! - a corrupt or truncated gzip or tar stream is an error
//!   ([`UnpackError::Corrupt`]): the gzip trailer (CRC, length) and the tar
//!   end-of-archive block must both be there;
//! - modes (permission bits only: set-id and sticky bits are dropped) and
//!   modification times are restored (not on symbolic links); directories
//!   get theirs after their contents are written;
//! - a tablespace's `pg_tblspc/<oid>` link points to an absolute path, so a
//!   base backup with tablespaces is refused until the caller maps them;
//! - nothing is fsync'ed: call [`sync_tree`] once the unpack succeeded and
//!   before the data directory is used.
//!
//! Speed: [`unpack`] parses the tar stream and writes the files in large
//! writes on the calling thread while, on a machine with two cores or more,
//! a second thread inflates into 128 KiB chunks handed over a bounded
//! channel (and back, for reuse). Measured against one thread on both kinds
//! of tarball, the second thread never lost (benches/README.md).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Size of the inflated chunks handed from the inflate thread to the writer,
/// and of the writes into files: small enough to be copied again while still
/// in the CPU's cache (1 MiB chunks were 30-50% slower: benches/README.md).
pub(super) const CHUNK_LEN: usize = 128 << 10;
/// Chunks in flight between the two threads (the channel's bound): 4 MiB.
pub(super) const CHUNKS_IN_FLIGHT: usize = 32;
/// Read size from the compressed file.
pub(super) const FILE_BUF_LEN: usize = 256 * 1024;
pub(super) const BLOCK: u64 = 512;
/// How many refused entries a [`TarballPlan`] lists (all are counted).
pub(super) const REFUSALS_LISTED: usize = 100;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt or truncated: {source}")]
    Corrupt { path: PathBuf, source: io::Error },
    #[error("{tarball}: refusing entry {entry:?}: {reason}")]
    Refused {
        tarball: PathBuf,
        entry: String,
        reason: Refusal,
    },
    #[error("destination {path} is not an existing directory")]
    NoDestination { path: PathBuf },
    #[error("cannot write {path} (entry {entry:?} of {tarball}): {source}")]
    Write {
        tarball: PathBuf,
        entry: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "cannot give the unpacked files to uid {uid} gid {gid}: running as uid {euid}; \
         only root can change owners (run as root, or as that user without an owner)"
    )]
    OwnerNotPermitted { uid: u32, gid: u32, euid: u32 },
    #[error("cannot start the inflate thread: {0}")]
    Thread(io::Error),
    #[error("cannot sync {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
}

/// Why an entry is not unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("absolute path")]
    Absolute,
    #[error("path has a `..` component")]
    ParentDir,
    #[error("empty path")]
    Empty,
    #[error(
        "link target {target:?} leaves the destination (only relative targets whose `..` come first and stay inside are accepted)"
    )]
    LinkOutside { target: String },
    #[error("link has no target")]
    NoLinkTarget,
    #[error("{parent:?} is a symbolic link in this tarball")]
    UnderSymlink { parent: String },
    #[error("{kind} entries are not unpacked")]
    Unsupported { kind: &'static str },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Give every entry to this uid, gid (the PostgreSQL OS user). Needs
    /// root, unless it is the current user and group (then nothing is done).
    pub owner: Option<(u32, u32)>,
}

/// Reported during [`unpack`], at most once per chunk read from the tarball,
/// and once at the end with `compressed_done == compressed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackProgress {
    /// Bytes of the tarball file read so far.
    pub compressed_done: u64,
    /// The tarball file's size.
    pub compressed_total: u64,
    /// File contents written so far.
    pub bytes_written: u64,
    /// Entries written so far (files, links and directories).
    pub files: u64,
    pub elapsed: Duration,
}

impl UnpackProgress {
    /// Tarball bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.compressed_done as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the rate so far; `None` before anything was read.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let left = self.compressed_total.saturating_sub(self.compressed_done) as f64;
        Duration::try_from_secs_f64(left / rate).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Regular files written.
    pub files: u64,
    /// Directory entries of the tarball (implicit parents not counted).
    pub dirs: u64,
    /// Symbolic and hard links made.
    pub links: u64,
    /// File contents written.
    pub bytes: u64,
    /// Whether inflating ran on a second thread (see the module notes).
    pub inflate_thread: bool,
    pub elapsed: Duration,
}

mod checks;
mod plan;
mod stream;
mod write;

use checks::EntryChecks;
use stream::{Pipeline, for_each_entry, open_source, with_stream};
use write::{Meter, TreeWriter};

pub use plan::{RefusedEntry, TarballPlan, plan_remembered, scan_tarball, scan_tarball_remembered};

/// Unpacks `tarball` (gzip'ed when its name ends in `.gz`) into the existing
/// directory `dest`, inflating on a second thread when there is a second
/// core. See the module notes for what is refused and why the thread;
/// nothing is fsync'ed (call [`sync_tree`] afterwards).
pub fn unpack(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
) -> Result<UnpackSummary, UnpackError> {
    unpack_with(
        tarball,
        dest,
        options,
        progress,
        Pipeline::for_this_machine(),
    )
}

/// [`unpack`] on the calling thread alone; kept for the comparison in
/// `benches/unpack.rs` and for the tests.
#[doc(hidden)]
pub fn unpack_single_threaded(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
) -> Result<UnpackSummary, UnpackError> {
    unpack_with(tarball, dest, options, progress, Pipeline::OneThread)
}

/// [`unpack`] inflating on a second thread whatever the machine; kept for
/// the comparison in `benches/unpack.rs` and for the tests (a one-core
/// machine never makes [`unpack`] start the thread).
#[doc(hidden)]
pub fn unpack_two_threaded(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
) -> Result<UnpackSummary, UnpackError> {
    unpack_with(tarball, dest, options, progress, Pipeline::TwoThreads)
}

/// fsyncs every file and directory under `dest` (symbolic links are not
/// followed), so an unpacked tree survives a crash. [`unpack`] leaves this
/// to the caller: one pass at the end lets the kernel write back in bulk.
pub fn sync_tree(dest: &Path) -> Result<(), UnpackError> {
    let sync = |path: &Path| {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|source| UnpackError::Sync {
                path: path.to_owned(),
                source,
            })
    };
    // Directories are synced after their contents, so pending (dir, listed)
    // pairs are revisited once their children are done.
    let mut stack = vec![(dest.to_owned(), false)];
    while let Some((dir, listed)) = stack.pop() {
        if listed {
            sync(&dir)?;
            continue;
        }
        stack.push((dir.clone(), true));
        let listing = fs::read_dir(&dir).map_err(|source| UnpackError::Sync {
            path: dir.clone(),
            source,
        })?;
        for item in listing {
            let item = item.map_err(|source| UnpackError::Sync {
                path: dir.clone(),
                source,
            })?;
            let kind = item.file_type().map_err(|source| UnpackError::Sync {
                path: item.path(),
                source,
            })?;
            if kind.is_dir() {
                stack.push((item.path(), false));
            } else if kind.is_file() {
                sync(&item.path())?;
            }
        }
    }
    Ok(())
}

fn unpack_with(
    tarball: &Path,
    dest: &Path,
    options: &UnpackOptions,
    progress: &mut dyn FnMut(UnpackProgress),
    pipeline: Pipeline,
) -> Result<UnpackSummary, UnpackError> {
    if !fs::metadata(dest).is_ok_and(|m| m.is_dir()) {
        return Err(UnpackError::NoDestination {
            path: dest.to_owned(),
        });
    }
    let owner = owner_to_apply(options.owner)?;
    let compressed = Arc::new(AtomicU64::new(0));
    let (source, compressed_total) = open_source(tarball, &compressed)?;
    let mut meter = Meter {
        start: Instant::now(),
        compressed: Arc::clone(&compressed),
        compressed_total,
        bytes_written: 0,
        files: 0,
        last_compressed: u64::MAX,
        report: progress,
    };
    let mut writer = TreeWriter {
        tarball,
        dest,
        owner,
        known_dirs: HashSet::new(),
        deferred_dirs: Vec::new(),
        buf: vec![0; CHUNK_LEN],
        summary: UnpackSummary {
            files: 0,
            dirs: 0,
            links: 0,
            bytes: 0,
            inflate_thread: false,
            elapsed: Duration::ZERO,
        },
    };
    let mut checks = EntryChecks::default();
    let ((), inflate_thread) = with_stream(tarball, source, pipeline, |reader| {
        for_each_entry(reader, tarball, |entry, header| {
            let checked = checks
                .check(&header)
                .map_err(|reason| UnpackError::Refused {
                    tarball: tarball.to_owned(),
                    entry: header.name(),
                    reason,
                })?;
            if let Some(checked) = checked {
                writer.apply(entry, &header, checked, &mut meter)?;
            }
            Ok(())
        })
    })?;
    writer.finish_dirs()?;
    writer.summary.inflate_thread = inflate_thread;
    writer.summary.elapsed = meter.start.elapsed();
    meter.finish();
    Ok(writer.summary)
}

/// Decides up front whether ownership can be given, so a non-root run fails
/// before writing anything rather than at the first file.
fn owner_to_apply(owner: Option<(u32, u32)>) -> Result<Option<(u32, u32)>, UnpackError> {
    let Some((uid, gid)) = owner else {
        return Ok(None);
    };
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0 {
        Ok(Some((uid, gid)))
    } else if uid == euid && gid == nix::unistd::getegid().as_raw() {
        // New files already belong to the current user and group.
        Ok(None)
    } else if uid == euid {
        // A user may give files to a group it belongs to; chown says if not.
        Ok(Some((uid, gid)))
    } else {
        Err(UnpackError::OwnerNotPermitted { uid, gid, euid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta() {
        let mut p = UnpackProgress {
            compressed_done: 0,
            compressed_total: 300,
            bytes_written: 0,
            files: 0,
            elapsed: Duration::ZERO,
        };
        assert_eq!(p.rate(), 0.0);
        assert_eq!(p.eta(), None);
        p.compressed_done = 100;
        p.elapsed = Duration::from_secs(2);
        assert_eq!(p.rate(), 50.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(4)));
    }
}
